# Run once by autounattend.xml at the build VM's first logon: WinRM over HTTP with basic auth,
# for Packer's communicator only. The VM's network is QEMU's user-mode network and Packer
# forwards the port from 127.0.0.1 only; seal.ps1 turns all of this off again (the vagrant
# build keeps WinRM for Vagrant, as Vagrant's Windows boxes do).
$ErrorActionPreference = 'Stop'
Get-NetConnectionProfile | Set-NetConnectionProfile -NetworkCategory Private
& winrm.cmd quickconfig -q -force
& winrm.cmd set winrm/config/service '@{AllowUnencrypted="true"}'
& winrm.cmd set winrm/config/service/auth '@{Basic="true"}'
& winrm.cmd set winrm/config/winrs '@{MaxMemoryPerShellMB="2048"}'
New-NetFirewallRule -Name 'hatchery-winrm-build' -DisplayName 'WinRM (Hatchery image build)' `
  -Direction Inbound -Protocol TCP -LocalPort 5985 -Action Allow | Out-Null
Set-Service -Name WinRM -StartupType Automatic
Restart-Service -Name WinRM
