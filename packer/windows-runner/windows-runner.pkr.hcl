# A Windows Server runner image for Hatchery: the GitHub Actions runner installed in
# C:\actions-runner and bootstrap/windows.ps1 run by a startup task at every boot
# (docs/guest-protocol.md, "Windows guests"). One template, two builds that differ only in how
# the image is sealed (packer/windows-runner/README.md):
#
#   packer build -only=qemu.openstack ...   → <output_dir>/openstack/disk.qcow2: no login at all
#                                             (OpenStack: upload to Glance; a command provider)
#   packer build -only=qemu.vagrant ...     → <output_dir>/hatchery-windows-runner.box: the same,
#                                             plus Vagrant's login (vagrant/vagrant over WinRM)
#
# Inputs nobody may redistribute are variables: the Windows ISO, the virtio-win drivers (the
# directory of the virtio-win ISO, mounted or extracted) and the runner's zip (a path or URL).
# Windows Setup takes autounattend.xml from the build CD; Packer talks WinRM, forwarded from
# 127.0.0.1 only. Packer 1.6.6 (Debian's) validates this template; no Windows build was run
# where it was written (README.md, "What was not run").

variable "iso_url" {
  type        = string
  description = "The Windows Server 2022 installation ISO: a path or URL (e.g. Microsoft's evaluation ISO)."
}

variable "iso_checksum" {
  type        = string
  description = "Its checksum, e.g. sha256:<hex>."
}

variable "virtio_win" {
  type        = string
  description = "The virtio-win ISO's contents (mounted or extracted): viostor and NetKVM drivers for Setup and the image."
}

variable "runner_zip" {
  type        = string
  description = "actions-runner-win-x64-<version>.zip: a local path (served to the build VM by Packer) or an http(s) URL."
}

variable "runner_sha256" {
  type        = string
  description = "The runner zip's sha256 (hex), as GitHub publishes it with each release."
  validation {
    # Packer 1.6.6 has no regex(): 64 characters, all of them hex digits.
    condition     = length(var.runner_sha256) == 64 && trim(lower(var.runner_sha256), "0123456789abcdef") == ""
    error_message = "The runner_sha256 must be 64 hex digits."
  }
}

variable "output_dir" {
  type        = string
  default     = "output/windows-runner"
  description = "openstack/disk.qcow2 and hatchery-windows-runner.box land here."
}

variable "bootstrap" {
  type        = string
  default     = ""
  description = "Path of bootstrap/windows.ps1 (default: the repository's)."
}

variable "accelerator" {
  type        = string
  default     = "kvm"
  description = "kvm: Windows Setup under TCG takes many hours; tcg works everywhere."
}

variable "memory" {
  type    = number
  default = 4096
}

variable "cpus" {
  type    = number
  default = 2
}

variable "disk_size" {
  type    = string
  default = "40G"
}

locals {
  bootstrap = var.bootstrap != "" ? var.bootstrap : "${path.root}/../../bootstrap/windows.ps1"
  # A local runner zip is offered by Packer's HTTP server (its directory); a URL is fetched by the VM.
  runner_is_url  = substr(var.runner_zip, 0, 7) == "http://" || substr(var.runner_zip, 0, 8) == "https://"
  runner_http    = local.runner_is_url ? "" : dirname(var.runner_zip)
  runner_source  = local.runner_is_url ? var.runner_zip : basename(var.runner_zip)
  build_password = "hatchery-build-only" # as in autounattend.xml: the build VM's only, see seal.ps1
}

source "qemu" "windows-runner" {
  iso_url          = var.iso_url
  iso_checksum     = var.iso_checksum
  disk_size        = var.disk_size
  format           = "qcow2"
  disk_interface   = "virtio"
  disk_compression = true
  disk_discard     = "unmap"
  net_device       = "virtio-net"
  machine_type     = "q35"
  accelerator      = var.accelerator
  memory           = var.memory
  cpus             = var.cpus
  headless         = true
  vnc_bind_address = "127.0.0.1"
  vm_name          = "disk.qcow2"
  # The answer file, WinRM's first-logon script and the virtio drivers, on one CD.
  cd_label = "HATCHERY"
  cd_files = [
    "${path.root}/autounattend.xml",
    "${path.root}/enable-winrm.ps1",
    "${var.virtio_win}/viostor",
    "${var.virtio_win}/NetKVM",
  ]
  http_directory    = local.runner_http
  http_bind_address = "127.0.0.1"
  qemuargs = [
    # WinRM forwarded from 127.0.0.1 only (Packer's default would bind every address).
    ["-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:5985"],
    ["-serial", "file:${var.output_dir}-console.log"],
  ]
  host_port_min    = 2222
  host_port_max    = 4444
  communicator     = "winrm"
  winrm_host       = "127.0.0.1"
  winrm_username   = "Administrator"
  winrm_password   = local.build_password
  winrm_timeout    = "6h"
  winrm_use_ssl    = false
  shutdown_timeout = "2h"
  boot_wait        = "5s"
}

build {
  source "source.qemu.windows-runner" {
    name             = "openstack"
    output_directory = "${var.output_dir}/openstack"
    shutdown_command = "powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\Windows\\Temp\\hatchery-seal.ps1 -Login none"
  }

  source "source.qemu.windows-runner" {
    name             = "vagrant"
    output_directory = "${var.output_dir}/vagrant"
    shutdown_command = "powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\Windows\\Temp\\hatchery-seal.ps1 -Login vagrant"
  }

  provisioner "powershell" {
    inline = ["New-Item -ItemType Directory -Force -Path C:\\Windows\\Temp\\hatchery | Out-Null"]
  }

  provisioner "file" {
    sources     = [local.bootstrap, "${path.root}/files/image.conf"]
    destination = "C:\\Windows\\Temp\\hatchery\\"
  }

  provisioner "file" {
    source      = "${path.root}/seal.ps1"
    destination = "C:\\Windows\\Temp\\hatchery-seal.ps1"
  }

  provisioner "powershell" {
    script = "${path.root}/provision.ps1"
    environment_vars = [
      "RUNNER_ZIP=${local.runner_source}",
      "RUNNER_SHA256=${var.runner_sha256}",
      "LOGIN=${source.name == "vagrant" ? "vagrant" : "none"}",
    ]
  }

  # A reboot between provisioning and sealing: pending driver and update work settles first.
  provisioner "windows-restart" {
    restart_timeout = "30m"
  }

  post-processor "vagrant" {
    only                 = ["qemu.vagrant"]
    output               = "${var.output_dir}/hatchery-windows-runner.box"
    vagrantfile_template = "${path.root}/files/Vagrantfile.box"
    compression_level    = 6
  }

  post-processor "checksum" {
    checksum_types = ["sha256"]
    output         = "${var.output_dir}/{{ .BuildName }}.sha256"
  }
}
