# Provisions the Hatchery Windows runner image (run by Packer over WinRM, as Administrator).
# Installs the GitHub Actions runner in C:\actions-runner (from RUNNER_ZIP: a URL, or a file
# name Packer's HTTP server offers), bootstrap\windows.ps1 in C:\Program Files\Hatchery and the
# startup task that runs it at every boot as SYSTEM; for the vagrant build also Vagrant's login.
#   RUNNER_ZIP      http(s)://.../actions-runner-win-x64-<version>.zip, or the zip's file name
#   RUNNER_SHA256   its sha256 (hex)
#   LOGIN           none | vagrant
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor
  [Net.SecurityProtocolType]::Tls12

$upload = 'C:\Windows\Temp\hatchery'
$programDir = Join-Path $env:ProgramFiles 'Hatchery'
$stateDir = Join-Path $env:ProgramData 'Hatchery'
$runnerDir = 'C:\actions-runner'

# --- The runner ---
$source = $env:RUNNER_ZIP
if ($source -notmatch '^https?://') {
  # A local file: Packer's HTTP server offers its directory. The build VM reaches the host's
  # loopback, where that server listens, as 10.0.2.2 (QEMU's user-mode network).
  $port = ($env:PACKER_HTTP_ADDR -split ':')[-1]
  $source = "http://10.0.2.2:$port/$([Uri]::EscapeDataString($source))"
}
$zip = Join-Path $upload 'actions-runner.zip'
Write-Host "downloading the runner from $source"
Invoke-WebRequest -UseBasicParsing -Uri $source -OutFile $zip
$got = (Get-FileHash -LiteralPath $zip -Algorithm SHA256).Hash.ToLowerInvariant()
if ($got -ne $env:RUNNER_SHA256.ToLowerInvariant()) {
  throw "runner checksum mismatch: expected $($env:RUNNER_SHA256), got $got"
}
New-Item -ItemType Directory -Force -Path $runnerDir | Out-Null
Expand-Archive -LiteralPath $zip -DestinationPath $runnerDir -Force
Remove-Item -LiteralPath $zip
if (-not (Test-Path -LiteralPath (Join-Path $runnerDir 'run.cmd'))) { throw 'the runner zip has no run.cmd' }

# --- The bootstrap, its state dir and image defaults ---
New-Item -ItemType Directory -Force -Path $programDir, $stateDir | Out-Null
Copy-Item -LiteralPath (Join-Path $upload 'windows.ps1') -Destination (Join-Path $programDir 'windows.ps1') -Force
# The state dir receives the per-VM config (JIT config, channel token): SYSTEM and
# Administrators only, nothing inherited.
& icacls.exe $stateDir /inheritance:r /grant:r 'SYSTEM:(OI)(CI)F' 'Administrators:(OI)(CI)F' | Out-Null
if ($LASTEXITCODE -ne 0) { throw "icacls $stateDir failed" }
Copy-Item -LiteralPath (Join-Path $upload 'image.conf') -Destination (Join-Path $stateDir 'image.conf') -Force

# --- At every boot, before any logon: windows.ps1 as SYSTEM, no time limit ---
$action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument (
  '-NoProfile -NonInteractive -ExecutionPolicy Bypass -File "' + (Join-Path $programDir 'windows.ps1') + '"')
$trigger = New-ScheduledTaskTrigger -AtStartup
$principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
$settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -AllowStartIfOnBatteries `
  -DontStopIfGoingOnBatteries -StartWhenAvailable -MultipleInstances IgnoreNew
Register-ScheduledTask -TaskName 'Hatchery bootstrap' -Action $action -Trigger $trigger -Principal $principal `
  -Settings $settings -Description 'Runs the Hatchery guest bootstrap (windows.ps1) once per boot' -Force | Out-Null

# --- A single-use CI machine: no hibernation file, no updates while a job runs ---
& powercfg.exe /hibernate off
$au = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU'
New-Item -Path $au -Force | Out-Null
Set-ItemProperty -Path $au -Name NoAutoUpdate -Value 1 -Type DWord

# --- Vagrant's convention for Windows boxes: user vagrant, password vagrant, WinRM ---
if ($env:LOGIN -eq 'vagrant') {
  $password = ConvertTo-SecureString 'vagrant' -AsPlainText -Force
  New-LocalUser -Name 'vagrant' -Password $password -PasswordNeverExpires -AccountNeverExpires | Out-Null
  Add-LocalGroupMember -Group 'Administrators' -Member 'vagrant'
}
Write-Host "provisioned: runner in $runnerDir, bootstrap in $programDir, login $($env:LOGIN)"
