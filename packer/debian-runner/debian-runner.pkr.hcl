# A Debian 12 image for Hatchery's QEMU provider: a real GitHub Actions runner VM whose
# hatchery-bootstrap.service runs the bootstrap delivered through fw_cfg at boot
# (docs/guest-protocol.md). Built from a local debootstrap base (build-base.sh), no ISO, no
# downloads from outside Debian's mirrors. See packer/README.md.
#
#   sudo ./build.sh <images_dir>/<name>                 # all of it: base, this template, cached by content
# or by hand:
#   sudo ./build-base.sh output/base                    # debootstrap → base.qcow2 (+ kernel, initrd, build key)
#   packer build debian-runner.pkr.hcl                  # → output/debian-runner/{disk.qcow2,bzImage,initrd.img,append,manifest}
#
# The image is built in a hidden sibling of output_dir (.<name>.partial) and moved into place
# only when complete (finish.sh): a second build replaces the first, and nothing that boots
# ever sees half an image. Packer 1.6.6 (Debian's): HCL2 works; the qemu builder is built in.

variable "base_dir" {
  type        = string
  default     = "output/base"
  description = "Output of build-base.sh: base.qcow2, vmlinuz, initrd.img, build-key."
}

variable "output_dir" {
  type        = string
  default     = "output/debian-runner"
  description = "Where the image lands, e.g. <qemu.images_dir>/<name> to use it as image <name>; an older image there is replaced."
}

variable "mirror" {
  type        = string
  default     = "http://deb.debian.org/debian"
  description = "Debian mirror for the suite and its -updates (the image's apt sources and the build's upgrade)."
}

variable "security_mirror" {
  type        = string
  default     = "http://deb.debian.org/debian-security"
  description = "Debian security mirror for <suite>-security."
}

variable "apt_upgrade" {
  type        = bool
  default     = true
  description = "Upgrade from the mirrors in the build VM (under TCG: minutes). build.sh sets false: its base was upgraded from the same mirrors minutes before."
}

variable "console_log" {
  type        = string
  default     = ""
  description = "The build VM's serial console (default <output_dir>-console.log)."
}

variable "inputs_hash" {
  type        = string
  default     = ""
  description = "Set by build.sh: the hash of the build's inputs, recorded in the image's manifest."
}

variable "accelerator" {
  type        = string
  default     = "tcg"
  description = "tcg works everywhere; kvm where /dev/kvm really works."
}

variable "memory" {
  type    = number
  default = 1024
}

variable "cpus" {
  type    = number
  default = 2
}

variable "bootstrap" {
  type        = string
  default     = ""
  description = "Path of bootstrap/linux.sh (default: the repository's)."
}

locals {
  bootstrap   = var.bootstrap != "" ? var.bootstrap : "${path.root}/../../bootstrap/linux.sh"
  files       = "${path.root}/files"
  work_dir    = "${dirname(var.output_dir)}/.${basename(var.output_dir)}.partial"
  console_log = var.console_log != "" ? var.console_log : "${var.output_dir}-console.log"
  append      = "root=/dev/vda rw console=ttyS0 quiet panic=-1"
}

source "qemu" "debian-runner" {
  # Boot the debootstrap base directly (kernel + initrd given to QEMU: the disk needs no bootloader).
  disk_image       = true
  iso_url          = "${var.base_dir}/base.qcow2"
  iso_checksum     = "none"
  use_backing_file = false
  skip_resize_disk = true
  format           = "qcow2"
  disk_interface   = "virtio"
  disk_compression = true
  disk_discard     = "unmap"
  net_device       = "virtio-net"
  accelerator      = var.accelerator
  memory           = var.memory
  cpus             = var.cpus
  headless         = true
  vnc_bind_address = "127.0.0.1"
  disable_vnc      = true
  output_directory = local.work_dir
  vm_name          = "disk.qcow2"
  qemuargs = [
    ["-kernel", "${var.base_dir}/vmlinuz"],
    ["-initrd", "${var.base_dir}/initrd.img"],
    ["-append", "root=/dev/vda rw console=ttyS0"],
    # The build VM's SSH port is forwarded from 127.0.0.1 only (Packer's default binds every address).
    ["-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
    ["-serial", "file:${local.console_log}"],
    ["-display", "none"],
  ]
  host_port_min        = 2222
  host_port_max        = 4444
  communicator         = "ssh"
  ssh_host             = "127.0.0.1"
  ssh_username         = "root"
  ssh_private_key_file = "${var.base_dir}/build-key"
  ssh_timeout          = "10m"
  shutdown_command     = "systemctl poweroff"
  shutdown_timeout     = "5m"
}

build {
  sources = ["source.qemu.debian-runner"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/hatchery"]
  }

  provisioner "file" {
    sources = [
      local.bootstrap,
      "${path.root}/apt-upgrade.sh",
      "${local.files}/hatchery-start",
      "${local.files}/hatchery-bootstrap.service",
      "${local.files}/modules-load.conf",
      "${local.files}/image.conf",
    ]
    destination = "/tmp/hatchery/"
  }

  provisioner "shell" {
    script = "${path.root}/provision.sh"
    environment_vars = [
      "HATCHERY_MIRROR=${var.mirror}",
      "HATCHERY_SECURITY_MIRROR=${var.security_mirror}",
      "HATCHERY_APT_UPGRADE=${var.apt_upgrade ? 1 : 0}",
    ]
    execute_command = "{{ .Vars }} sh -eu '{{ .Path }}'"
  }

  # The kernel and initramfs the image boots with (QEMU -kernel/-initrd): after provisioning,
  # which may have upgraded them.
  provisioner "file" {
    direction   = "download"
    source      = "/vmlinuz"
    destination = "${local.work_dir}/bzImage"
  }

  provisioner "file" {
    direction   = "download"
    source      = "/initrd.img"
    destination = "${local.work_dir}/initrd.img"
  }

  # Last: nothing of the build stays in the image (build key, SSH, machine id, apt lists).
  provisioner "shell" {
    script          = "${path.root}/seal.sh"
    execute_command = "sh -eu '{{ .Path }}'"
  }

  # Completes the image in the work dir (append, manifest) and moves it to output_dir.
  post-processor "shell-local" {
    script = "${path.root}/finish.sh"
    environment_vars = [
      "WORK_DIR=${local.work_dir}",
      "OUTPUT_DIR=${var.output_dir}",
      "APPEND=${local.append}",
      "INPUTS_HASH=${var.inputs_hash}",
      "MIRROR=${var.mirror}",
      "SECURITY_MIRROR=${var.security_mirror}",
    ]
    execute_command = ["/bin/sh", "-c", "{{ .Vars }} /bin/sh -eu '{{ .Script }}'"]
  }
}
