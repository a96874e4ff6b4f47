# A Debian 12 image for Hatchery's QEMU provider: a real GitHub Actions runner VM whose
# hatchery-bootstrap.service runs the bootstrap delivered through fw_cfg at boot
# (docs/guest-protocol.md). Built from a local debootstrap base (build-base.sh), no ISO, no
# downloads from outside Debian's mirror. See packer/README.md.
#
#   ./build-base.sh output/base                         # once: debootstrap → base.qcow2 (+ kernel, initrd, build key)
#   packer build debian-runner.pkr.hcl                  # → output/debian-runner/{disk.qcow2,bzImage,initrd.img,append}
#
# Packer 1.6.6 (Debian's): HCL2 works; the qemu builder is built in.

variable "base_dir" {
  type        = string
  default     = "output/base"
  description = "Output of build-base.sh: base.qcow2, vmlinuz, initrd.img, build-key."
}

variable "output_dir" {
  type        = string
  default     = "output/debian-runner"
  description = "Where the image lands; copy it to <qemu.images_dir>/<name>/ to use it as image <name>."
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
  bootstrap = var.bootstrap != "" ? var.bootstrap : "${path.root}/../../bootstrap/linux.sh"
  files     = "${path.root}/files"
  boot_dir  = "${var.output_dir}-boot"
  append    = "root=/dev/vda rw console=ttyS0 quiet panic=-1"
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
  output_directory = var.output_dir
  vm_name          = "disk.qcow2"
  qemuargs = [
    ["-kernel", "${var.base_dir}/vmlinuz"],
    ["-initrd", "${var.base_dir}/initrd.img"],
    ["-append", "root=/dev/vda rw console=ttyS0"],
    # The build VM's SSH port is forwarded from 127.0.0.1 only (Packer's default binds every address).
    ["-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
    ["-serial", "file:${var.output_dir}-console.log"],
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
      "${local.files}/hatchery-start",
      "${local.files}/hatchery-bootstrap.service",
      "${local.files}/modules-load.conf",
      "${local.files}/image.conf",
    ]
    destination = "/tmp/hatchery/"
  }

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "sh -eu '{{ .Path }}'"
  }

  # The kernel and initramfs the image boots with (QEMU -kernel/-initrd): after provisioning,
  # in case it changed them.
  provisioner "shell-local" {
    inline = ["mkdir -p '${local.boot_dir}'"]
  }

  provisioner "file" {
    direction   = "download"
    source      = "/vmlinuz"
    destination = "${local.boot_dir}/bzImage"
  }

  provisioner "file" {
    direction   = "download"
    source      = "/initrd.img"
    destination = "${local.boot_dir}/initrd.img"
  }

  # Last: nothing of the build stays in the image (build key, SSH, machine id, apt lists).
  provisioner "shell" {
    script          = "${path.root}/seal.sh"
    execute_command = "sh -eu '{{ .Path }}'"
  }

  post-processor "shell-local" {
    inline = [
      "mv '${local.boot_dir}/bzImage' '${local.boot_dir}/initrd.img' '${var.output_dir}/'",
      "rmdir '${local.boot_dir}'",
      "printf '%s\\n' '${local.append}' > '${var.output_dir}/append'",
      "echo 'image ready in ${var.output_dir}: disk.qcow2 bzImage initrd.img append'",
    ]
  }
}
