<#
.SYNOPSIS
Hatchery guest bootstrap for Windows: registers a one-shot GitHub Actions runner, reports its
lifecycle to the service over the HTTP guest channel and powers the VM off afterwards.

.DESCRIPTION
The Windows counterpart of bootstrap/linux.sh, with the same contract (docs/guest-protocol.md,
"Windows guests"). Windows PowerShell 5.1 (Windows Server 2019/2022 as installed); no module
beyond what Windows ships.

  windows.ps1 [-ConfigPath <file>]   run the bootstrap (once per boot: a lock file says so)
  windows.ps1 -Teardown              the teardown hook: asks the running bootstrap to stop its
                                     runner and power off, and waits (up to 60 s) for it

Without -ConfigPath the guest config is looked for, in this order: the file config in the state
dir (placed by a provisioner, e.g. over WinRM; removed once read), the OpenStack config drive
(volume label config-2: openstack\latest\user_data), the OpenStack metadata service
(http://169.254.169.254/openstack/latest/user_data). When there is none the script does nothing:
the image also boots as a plain VM.

Only the http channel exists here (HATCHERY_CHANNEL=http(s)://...): a Windows pool always uses
it. The config is parsed line by line into known keys, never evaluated. The JIT runner config
and the channel token stay in memory: never logged, never written to a file, and the JIT config
appears on no command line but the runner's own (run.cmd --jitconfig, which the runner requires).

Environment (image or test settings, not per-VM config):
  HATCHERY_STATE_DIR     state, log, lock (default $env:ProgramData\Hatchery)
  HATCHERY_IMAGE_CONF    image defaults in the config format (default <state dir>\image.conf),
                         overridden by the per-VM config; e.g. HATCHERY_WORK_DIR=D:\runner
  HATCHERY_POLL_SECONDS  how often to poll the host for messages (default 5)
#>
[CmdletBinding()]
param(
  [string]$ConfigPath = '',
  [switch]$Teardown
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue' # Windows PowerShell's progress bar slows downloads tenfold

# ---------------------------------------------------------------------------------------------
# Protocol data (docs/guest-protocol.md). Kept as literals in one place: the tests read them from
# this file (test/integration/windows-bootstrap.test.ts) and check them against the service.

# One NAME=VALUE per line; VALUE runs to the end of the line.
$ConfigLinePattern = '^([A-Z][A-Z0-9_]*)=(.*)$'
$ConfigKeys = @(
  'HATCHERY_VM',
  'HATCHERY_RUNNER_URL',
  'HATCHERY_RUNNER_SHA256',
  'HATCHERY_JITCONFIG',
  'HATCHERY_CHANNEL',
  'HATCHERY_CHANNEL_TOKEN',
  'HATCHERY_WORK_DIR',
  'HATCHERY_WORK_DISK',
  'HATCHERY_NET',
  'HATCHERY_POWEROFF',
  'HATCHERY_JIT_TIMEOUT',
  'HATCHERY_RUNNER_USER'
)
# What the runner prints -> the event it stands for (the detail is the first group, if any).
$RunnerPatterns = @(
  @{ Event = 'registered'; Pattern = 'Listening for Jobs'; Once = $true },
  @{ Event = 'job-started'; Pattern = 'Running job: (.*)$'; Once = $false },
  @{ Event = 'job-finished'; Pattern = 'Job .* completed with result: (.*)$'; Once = $false }
)
# A JIT config (base64) as the host sends it in a `jit` line or the config.
$JitPattern = '^[A-Za-z0-9+/=_-]+$'
# Event details: no control characters, at most 400 bytes.
$DetailStripPattern = '[\x00-\x1f\x7f]'
$DetailMaxBytes = 400
$WorkDirPattern = '^[A-Za-z]:\\[A-Za-z0-9 ._\\-]*$'
$StaticNetPattern = '^static:(\d{1,3}(?:\.\d{1,3}){3})/(\d{1,2})(?:,(\d{1,3}(?:\.\d{1,3}){3}))?$'

# ---------------------------------------------------------------------------------------------
# Pure parts: no I/O.

function ConvertFrom-GuestConfig {
  # NAME=VALUE lines -> a hashtable of the known keys. Other lines and unknown keys are ignored
  # (forward compatibility), so a user_data that holds the config lines among others works too.
  param([string]$Text, [hashtable]$Into)
  foreach ($raw in ($Text -split "`n")) {
    $line = $raw.TrimEnd("`r")
    $m = [regex]::Match($line, $ConfigLinePattern)
    if ($m.Success -and ($ConfigKeys -ccontains $m.Groups[1].Value)) {
      $Into[$m.Groups[1].Value] = $m.Groups[2].Value
    }
  }
  return $Into
}

function ConvertTo-EventDetail {
  param([string]$Text)
  $clean = [regex]::Replace($Text, $DetailStripPattern, '')
  while ([Text.Encoding]::UTF8.GetByteCount($clean) -gt $DetailMaxBytes) {
    $clean = $clean.Substring(0, $clean.Length - 1)
  }
  return $clean
}

function Format-EventLine {
  param([int]$Seq, [string]$Name, [string]$Detail)
  $line = "event $Seq $Name"
  $clean = ConvertTo-EventDetail $Detail
  if ($clean -ne '') { $line = "$line $clean" }
  return $line
}

function Get-RunnerEvent {
  # The event a runner output line stands for, or $null.
  param([string]$Line)
  foreach ($p in $RunnerPatterns) {
    $m = [regex]::Match($Line, $p.Pattern)
    if ($m.Success) {
      $detail = ''
      if ($m.Groups.Count -gt 1) { $detail = $m.Groups[1].Value }
      return @{ Name = $p.Event; Detail = $detail; Once = $p.Once }
    }
  }
  return $null
}

function Test-Jit {
  param([string]$Value)
  return ($Value -ne '') -and [regex]::IsMatch($Value, $JitPattern)
}

# ---------------------------------------------------------------------------------------------
# State and logging

$StateBase = $env:HATCHERY_STATE_DIR
if (-not $StateBase) { $StateBase = Join-Path $env:ProgramData 'Hatchery' }
$LogFile = Join-Path $StateBase 'bootstrap.log'
$LockFile = Join-Path $StateBase 'bootstrap.lock'
$TeardownFile = Join-Path $StateBase 'teardown.request'
$DoneFile = Join-Path $StateBase 'bootstrap.done'
$RunnerOut = Join-Path $StateBase 'runner.out'

$Cfg = @{
  HATCHERY_VM            = ''
  HATCHERY_RUNNER_URL    = ''
  HATCHERY_RUNNER_SHA256 = ''
  HATCHERY_JITCONFIG     = ''
  HATCHERY_CHANNEL       = ''
  HATCHERY_CHANNEL_TOKEN = ''
  HATCHERY_WORK_DIR      = 'C:\actions-runner'
  HATCHERY_WORK_DISK     = ''
  HATCHERY_NET           = 'none'
  HATCHERY_POWEROFF      = '1'
  HATCHERY_JIT_TIMEOUT   = '600'
  HATCHERY_RUNNER_USER   = ''
}

$script:Serial = $null
$script:Lock = $null
$script:Jit = ''
$script:Events = New-Object 'System.Collections.Generic.List[string]'
$script:Acked = 0
$script:Replaying = $false
$script:NextTry = [DateTime]::MinValue
$script:NextPoll = [DateTime]::MinValue
$script:Delay = 1
$script:ShutdownAsked = $false
$script:TearingDown = $false
$script:Runner = $null
$script:Registered = $false
$script:OutPos = 0
$script:OutText = ''
$script:OutDecoder = [Text.Encoding]::UTF8.GetDecoder()
$PollSeconds = 5
if ($env:HATCHERY_POLL_SECONDS -match '^[1-9][0-9]{0,3}$') { $PollSeconds = [int]$env:HATCHERY_POLL_SECONDS }

function Invoke-Quiet {
  # A native command, its output discarded. Windows PowerShell turns a native program's stderr
  # into errors, which $ErrorActionPreference = 'Stop' would make fatal. Returns the exit code.
  param([string]$File, [string[]]$Arguments)
  $previous = $ErrorActionPreference
  $ErrorActionPreference = 'Continue'
  try {
    & $File @Arguments 2>&1 | Out-Null
    return $LASTEXITCODE
  } finally {
    $ErrorActionPreference = $previous
  }
}

function Write-Log {
  # To the host, the log file and the first serial port (the VM's console for the provider).
  param([string]$Message)
  $line = "hatchery: $Message"
  [Console]::Error.WriteLine($line)
  try { Add-Content -LiteralPath $LogFile -Value $line -Encoding UTF8 } catch { }
  if ($script:Serial -is [bool]) { return } # no serial port: not tried again
  try {
    if ($null -eq $script:Serial) {
      $script:Serial = New-Object System.IO.Ports.SerialPort 'COM1', 115200
      $script:Serial.WriteTimeout = 500
      $script:Serial.Open()
    }
    $script:Serial.WriteLine($line)
  } catch {
    $script:Serial = $false
  }
}

# ---------------------------------------------------------------------------------------------
# The HTTP channel: one POST per event line, the answer holds host -> guest lines. Events are kept
# in order; the host takes each seq once, so resending is always safe (replay on `sync`, polls).

function Invoke-HostLine {
  param([string]$Line)
  $l = $Line.TrimEnd("`r")
  if ($l -ceq 'sync') {
    if (-not $script:Replaying) {
      $script:Acked = 0
      $script:Replaying = $true
    }
  } elseif ($l.StartsWith('jit ')) {
    $value = $l.Substring(4)
    if (-not (Test-Jit $value)) {
      Write-Log 'ignoring a malformed jit message'
    } elseif ($script:Jit -eq '') {
      $script:Jit = $value
    }
  } elseif ($l -ceq 'shutdown') {
    if (-not $script:ShutdownAsked) { Write-Log 'the host asks for a shutdown' }
    $script:ShutdownAsked = $true
  }
  # Anything else is ignored (forward compatibility).
}

function Send-ChannelLine {
  # One POST. $null when it failed, else @{ Lines = the host's answer lines } (2xx: taken). The
  # caller counts the event as taken before it acts on the lines (a `sync` among them rewinds).
  # The token goes in a header, never in a log.
  param([string]$Line)
  try {
    $r = Invoke-WebRequest -UseBasicParsing -Method Post -Uri $Cfg.HATCHERY_CHANNEL -TimeoutSec 15 `
      -Headers @{ Authorization = "Bearer $($Cfg.HATCHERY_CHANNEL_TOKEN)" } `
      -ContentType 'text/plain; charset=utf-8' -Body ([Text.Encoding]::UTF8.GetBytes($Line))
  } catch {
    return $null
  }
  $content = $r.Content
  if ($content -is [byte[]]) { $content = [Text.Encoding]::UTF8.GetString($content) }
  $lines = @()
  if ($content) { $lines = @($content -split "`n" | Where-Object { $_ -ne '' }) }
  return @{ Lines = $lines }
}

function Invoke-ChannelPump {
  # Sends what the host has not taken yet; when there is nothing new, re-posts the latest event
  # every $PollSeconds (the host can only answer: that is how `shutdown` and `jit` reach us).
  # A failed POST is retried 1, 2, 4 ... 16 s later; nothing here blocks longer than one POST.
  $now = Get-Date
  if ($now -lt $script:NextTry -or $script:Events.Count -eq 0) { return }
  if ($script:Acked -ge $script:Events.Count) {
    if ($now -lt $script:NextPoll) { return }
    $answer = Send-ChannelLine $script:Events[$script:Events.Count - 1]
    $ok = $null -ne $answer
    if ($ok) { foreach ($hl in $answer.Lines) { Invoke-HostLine $hl } }
  } else {
    $ok = $true
    while ($ok -and $script:Acked -lt $script:Events.Count) {
      $answer = Send-ChannelLine $script:Events[$script:Acked]
      $ok = $null -ne $answer
      if ($ok) {
        $script:Acked++
        foreach ($hl in $answer.Lines) { Invoke-HostLine $hl }
      }
    }
    if ($script:Acked -ge $script:Events.Count) { $script:Replaying = $false }
  }
  if ($ok) {
    $script:Delay = 1
    $script:NextPoll = (Get-Date).AddSeconds($PollSeconds)
  } else {
    $script:NextTry = (Get-Date).AddSeconds($script:Delay)
    if ($script:Delay -lt 16) { $script:Delay = $script:Delay * 2 }
  }
}

function Receive-HostLines {
  # The long-poll: a GET the host holds open until it has a line for us (a warm VM's `jit`) or
  # $Seconds pass. $false when it failed (the caller pauses before the next one).
  param([int]$Seconds)
  $sep = '?'
  if ($Cfg.HATCHERY_CHANNEL.Contains('?')) { $sep = '&' }
  try {
    $r = Invoke-WebRequest -UseBasicParsing -Method Get -Uri ($Cfg.HATCHERY_CHANNEL + $sep + 'wait=' + $Seconds) `
      -TimeoutSec ($Seconds + 5) -Headers @{ Authorization = "Bearer $($Cfg.HATCHERY_CHANNEL_TOKEN)" }
  } catch {
    return $false
  }
  $content = $r.Content
  if ($content -is [byte[]]) { $content = [Text.Encoding]::UTF8.GetString($content) }
  if ($content) { foreach ($hl in @($content -split "`n" | Where-Object { $_ -ne '' })) { Invoke-HostLine $hl } }
  return $true
}

function Add-GuestEvent {
  param([string]$Name, [string]$Detail = '')
  $line = Format-EventLine ($script:Events.Count + 1) $Name $Detail
  Write-Log ('event: ' + ($line -replace '^event [0-9]+ ', ''))
  $script:Events.Add($line)
  Invoke-ChannelPump
}

function Wait-ChannelFlushed {
  param([int]$Seconds)
  $until = (Get-Date).AddSeconds($Seconds)
  while ($script:Acked -lt $script:Events.Count -and (Get-Date) -lt $until) {
    Invoke-ChannelPump
    if ($script:Acked -lt $script:Events.Count) { Start-Sleep -Milliseconds 200 }
  }
  if ($script:Acked -lt $script:Events.Count) { Write-Log "the host did not take the last events within $Seconds s" }
}

# ---------------------------------------------------------------------------------------------
# Ending

function Stop-Machine {
  param([int]$Code)
  if ($Cfg.HATCHERY_POWEROFF -eq '0') {
    Write-Log 'HATCHERY_POWEROFF=0: staying up'
  } else {
    Write-Log 'powering off'
    $null = Invoke-Quiet 'shutdown.exe' @('/s', '/t', '0', '/f', '/d', 'p:4:1')
  }
  exit $Code
}

function Complete-Bootstrap {
  param([int]$Code)
  # The last word: on the http channel nothing else tells the host that this VM is done.
  if ($script:Events.Count -gt 0 -and $Cfg.HATCHERY_POWEROFF -ne '0') { Add-GuestEvent 'poweroff' }
  Wait-ChannelFlushed 10
  try { Set-Content -LiteralPath $DoneFile -Value $Code } catch { }
  if ($null -ne $script:Lock) { $script:Lock.Dispose() }
  Stop-Machine $Code
}

function Stop-WithError {
  param([string]$Reason)
  Write-Log "error: $Reason"
  if ($script:Events.Count -gt 0) { Add-GuestEvent 'error' $Reason }
  if ($null -ne $script:Runner) { $null = Stop-Runner }
  Complete-Bootstrap 1
}

# ---------------------------------------------------------------------------------------------
# Networking

function Initialize-Network {
  # Returns '' or the reason it failed.
  $net = $Cfg.HATCHERY_NET
  if ($net -eq 'none' -or $net -eq '') { return '' }
  $adapter = $null
  for ($i = 0; $i -lt 100 -and $null -eq $adapter; $i++) {
    $adapter = Get-NetAdapter -Physical -ErrorAction SilentlyContinue | Where-Object { $_.Status -eq 'Up' } |
      Sort-Object -Property ifIndex | Select-Object -First 1
    if ($null -eq $adapter) { Start-Sleep -Milliseconds 100 }
  }
  if ($null -eq $adapter) { return 'no network interface' }
  if ($net -eq 'dhcp') {
    Write-Log "network: DHCP on $($adapter.Name)"
    try {
      Set-NetIPInterface -InterfaceIndex $adapter.ifIndex -AddressFamily IPv4 -Dhcp Enabled
    } catch {
      return "DHCP on $($adapter.Name) failed"
    }
    return ''
  }
  $m = [regex]::Match($net, $StaticNetPattern)
  if (-not $m.Success) { return 'unknown HATCHERY_NET (static:<ip>/<prefix>[,<gw>], dhcp or none)' }
  $address = $m.Groups[1].Value
  $prefix = [int]$m.Groups[2].Value
  $gateway = $m.Groups[3].Value
  Write-Log "network: $address/$prefix$(if ($gateway) { " via $gateway" }) on $($adapter.Name)"
  try {
    Set-NetIPInterface -InterfaceIndex $adapter.ifIndex -AddressFamily IPv4 -Dhcp Disabled
    Get-NetIPAddress -InterfaceIndex $adapter.ifIndex -AddressFamily IPv4 -ErrorAction SilentlyContinue |
      Remove-NetIPAddress -Confirm:$false -ErrorAction SilentlyContinue
    $params = @{ InterfaceIndex = $adapter.ifIndex; IPAddress = $address; PrefixLength = $prefix }
    if ($gateway) { $params.DefaultGateway = $gateway }
    $null = New-NetIPAddress @params
  } catch {
    return "cannot configure $($adapter.Name)"
  }
  return ''
}

# ---------------------------------------------------------------------------------------------
# The runner

function Install-Runner {
  $work = $Cfg.HATCHERY_WORK_DIR
  if (-not [regex]::IsMatch($work, $WorkDirPattern)) { Stop-WithError "bad HATCHERY_WORK_DIR $work" }
  if ($Cfg.HATCHERY_WORK_DISK) { Write-Log 'HATCHERY_WORK_DISK is not supported on Windows: ignored' }
  try { $null = New-Item -ItemType Directory -Force -Path $work } catch { Stop-WithError "cannot create the work dir $work" }
  $url = $Cfg.HATCHERY_RUNNER_URL
  if (-not $url) {
    # The image's own runner (packer/windows-runner installs it in the work dir).
    if (-not (Test-Path -LiteralPath (Join-Path $work 'run.cmd'))) {
      Stop-WithError "no HATCHERY_RUNNER_URL and no runner installed in $work"
    }
    Write-Log "using the runner installed in $work"
    return
  }
  if (-not $Cfg.HATCHERY_RUNNER_SHA256) { Stop-WithError 'no HATCHERY_RUNNER_SHA256' }
  $shown = ($url -split '\?')[0]
  $archive = Join-Path $work '.runner.download'
  Write-Log "downloading the runner from $shown"
  for ($try = 1; ; $try++) {
    Remove-Item -LiteralPath $archive -Force -ErrorAction SilentlyContinue
    try {
      Invoke-WebRequest -UseBasicParsing -Uri $url -OutFile $archive -TimeoutSec 3600
      break
    } catch {
      if ($try -ge 4) { Stop-WithError "runner download failed after $try attempts: $shown" }
      Write-Log "download attempt $try failed, retrying in $try s"
      Start-Sleep -Seconds $try
    }
  }
  $want = $Cfg.HATCHERY_RUNNER_SHA256.ToLowerInvariant()
  $got = (Get-FileHash -LiteralPath $archive -Algorithm SHA256).Hash.ToLowerInvariant()
  if ($got -ne $want) { Stop-WithError "checksum mismatch: expected $want, got $got ($shown)" }
  Write-Log 'runner downloaded, sha256 ok'
  try {
    if ($shown -match '\.zip$') {
      Expand-Archive -LiteralPath $archive -DestinationPath $work -Force
    } else {
      if ((Invoke-Quiet 'tar.exe' @('-xzf', $archive, '-C', $work)) -ne 0) { throw 'tar failed' }
    }
  } catch {
    Stop-WithError 'cannot unpack the runner archive'
  }
  Remove-Item -LiteralPath $archive -Force
  if (-not (Test-Path -LiteralPath (Join-Path $work 'run.cmd'))) { Stop-WithError 'the runner archive has no run.cmd' }
}

function Wait-Jit {
  if ($Cfg.HATCHERY_JITCONFIG) {
    if (-not (Test-Jit $Cfg.HATCHERY_JITCONFIG)) { Stop-WithError 'malformed HATCHERY_JITCONFIG' }
    $script:Jit = $Cfg.HATCHERY_JITCONFIG
    return
  }
  $limit = 600
  if ($Cfg.HATCHERY_JIT_TIMEOUT -match '^[0-9]+$') { $limit = [int]$Cfg.HATCHERY_JIT_TIMEOUT }
  Write-Log "waiting for the JIT config from the host (up to $limit s)"
  # The runner is in place: the host may hand this VM to a job now (a warm VM).
  Add-GuestEvent 'awaiting-jit'
  $until = (Get-Date).AddSeconds($limit)
  while ($script:Jit -eq '') {
    if ((Get-Date) -ge $until) { Stop-WithError "no JIT config within $limit s" }
    Invoke-ChannelPump
    if ($script:Jit -eq '' -and -not (Receive-HostLines 10)) { Start-Sleep -Milliseconds 200 }
    Test-TeardownAsked
  }
}

function Start-Runner {
  if ($Cfg.HATCHERY_RUNNER_USER) { Write-Log 'HATCHERY_RUNNER_USER is not supported on Windows: the runner runs as this task''s account' }
  $work = $Cfg.HATCHERY_WORK_DIR
  Remove-Item -LiteralPath $RunnerOut -Force -ErrorAction SilentlyContinue
  # cmd.exe runs run.cmd with its output in a file we follow: PowerShell 5.1 cannot take a
  # child's output events on its own thread. Every part of this command line was validated
  # ($WorkDirPattern, $JitPattern, $StateBase is the image's): nothing in it reaches cmd's parser.
  $psi = New-Object System.Diagnostics.ProcessStartInfo
  $psi.FileName = Join-Path $env:SystemRoot 'System32\cmd.exe'
  $psi.Arguments = '/d /s /c ""' + (Join-Path $work 'run.cmd') + '" --jitconfig ' + $script:Jit +
    ' <NUL >"' + $RunnerOut + '" 2>&1"'
  $psi.WorkingDirectory = $work
  $psi.UseShellExecute = $false
  $psi.CreateNoWindow = $true
  Write-Log 'starting the runner'
  try {
    $script:Runner = [System.Diagnostics.Process]::Start($psi)
  } catch {
    Stop-WithError 'the runner did not start'
  }
}

function Read-RunnerOutput {
  # Follows the runner's output file: each complete line to the log, and its event, if any.
  if (-not (Test-Path -LiteralPath $RunnerOut)) { return }
  try {
    $fs = [IO.File]::Open($RunnerOut, 'Open', 'Read', 'ReadWrite')
  } catch {
    return
  }
  try {
    $null = $fs.Seek($script:OutPos, 'Begin')
    $buf = New-Object byte[] 65536
    $chars = New-Object char[] 65540
    while (($n = $fs.Read($buf, 0, $buf.Length)) -gt 0) {
      $script:OutPos += $n
      $c = $script:OutDecoder.GetChars($buf, 0, $n, $chars, 0)
      $script:OutText += [string]::new($chars, 0, $c)
    }
  } finally {
    $fs.Dispose()
  }
  while (($i = $script:OutText.IndexOf("`n")) -ge 0) {
    $line = $script:OutText.Substring(0, $i).TrimEnd("`r")
    $script:OutText = $script:OutText.Substring($i + 1)
    if ($script:Jit -and $line.Contains($script:Jit)) {
      $line = '(a line holding the JIT config, not shown)'
    }
    Write-Log "runner| $line"
    $e = Get-RunnerEvent $line
    if ($null -ne $e) {
      if ($e.Once -and $script:Registered) { continue }
      if ($e.Once) { $script:Registered = $true }
      Add-GuestEvent $e.Name $e.Detail
    }
  }
}

function Stop-Runner {
  # taskkill /T ends the runner's tree (cmd.exe -> run.cmd -> Runner.Listener); a console program
  # in another session gets no Ctrl-C, so after 10 s the tree is ended with /F. Returns the code.
  $p = $script:Runner
  if (-not $p.HasExited) {
    $null = Invoke-Quiet 'taskkill.exe' @('/T', '/PID', "$($p.Id)")
    if (-not $p.WaitForExit(10000)) {
      Write-Log 'the runner did not stop within 10 s: taskkill /F'
      $null = Invoke-Quiet 'taskkill.exe' @('/F', '/T', '/PID', "$($p.Id)")
      $null = $p.WaitForExit(10000)
    }
  }
  Read-RunnerOutput
  if ($p.HasExited) { return $p.ExitCode }
  return 137
}

# The teardown hook: a `shutdown` line from the host, or `windows.ps1 -Teardown` (the request file).
function Test-TeardownAsked {
  if ($script:ShutdownAsked -or (Test-Path -LiteralPath $TeardownFile)) { Invoke-Teardown }
}

function Invoke-Teardown {
  if ($script:TearingDown) { return }
  $script:TearingDown = $true
  Write-Log 'teardown: stopping the runner'
  Add-GuestEvent 'stopping'
  if ($null -ne $script:Runner) {
    $code = Stop-Runner
    Add-GuestEvent 'runner-exited' "$code"
  }
  Complete-Bootstrap 0
}

function Request-Teardown {
  # Run by whoever tears the VM down (e.g. a provider's before-destroy hook over WinRM).
  if (-not (Test-Path -LiteralPath $LockFile)) { Write-Log 'teardown: no bootstrap ran here'; return }
  Set-Content -LiteralPath $TeardownFile -Value 'teardown'
  $until = (Get-Date).AddSeconds(60)
  while (-not (Test-Path -LiteralPath $DoneFile) -and (Get-Date) -lt $until) { Start-Sleep -Milliseconds 200 }
  if (Test-Path -LiteralPath $DoneFile) { Write-Log 'teardown: the bootstrap has finished' }
  else { Write-Log 'teardown: the bootstrap did not finish within 60 s' }
}

# ---------------------------------------------------------------------------------------------
# Where the config comes from

function Get-GuestConfigText {
  # @{ Text; Source } or $null. The state dir's file is removed once read: it holds the JIT
  # config and the channel token, which stay in memory from here on.
  if ($ConfigPath) {
    if (-not (Test-Path -LiteralPath $ConfigPath -PathType Leaf)) { return $null }
    return @{ Text = [IO.File]::ReadAllText($ConfigPath); Source = $ConfigPath }
  }
  $file = Join-Path $StateBase 'config'
  if (Test-Path -LiteralPath $file -PathType Leaf) {
    $text = [IO.File]::ReadAllText($file)
    Remove-Item -LiteralPath $file -Force
    return @{ Text = $text; Source = $file }
  }
  $drives = @(Get-CimInstance -ClassName Win32_LogicalDisk -ErrorAction SilentlyContinue |
      Where-Object { $_.VolumeName -and $_.VolumeName.ToLowerInvariant() -eq 'config-2' })
  foreach ($d in $drives) {
    $ud = Join-Path ($d.DeviceID + '\') 'openstack\latest\user_data'
    if (Test-Path -LiteralPath $ud -PathType Leaf) {
      return @{ Text = [IO.File]::ReadAllText($ud); Source = "config drive $($d.DeviceID)" }
    }
  }
  for ($i = 1; $i -le 3; $i++) {
    try {
      $r = Invoke-WebRequest -UseBasicParsing -TimeoutSec 3 -Uri 'http://169.254.169.254/openstack/latest/user_data'
      $text = $r.Content
      if ($text -is [byte[]]) { $text = [Text.Encoding]::UTF8.GetString($text) }
      return @{ Text = $text; Source = 'the metadata service' }
    } catch {
      $status = $null
      if ($_.Exception.PSObject.Properties['Response'] -and $_.Exception.Response) {
        $status = [int]$_.Exception.Response.StatusCode
      }
      if ($status -eq 404) { return $null } # a metadata service without user_data
      Start-Sleep -Seconds 1
    }
  }
  return $null
}

# ---------------------------------------------------------------------------------------------

function Invoke-Main {
  $null = New-Item -ItemType Directory -Force -Path $StateBase
  if ($Teardown) { Request-Teardown; exit 0 }
  try {
    $script:Lock = [IO.File]::Open($LockFile, 'OpenOrCreate', 'ReadWrite', 'None')
  } catch {
    Write-Log 'another bootstrap runs already: nothing to do'
    exit 0
  }
  if (Test-Path -LiteralPath $DoneFile) {
    Write-Log 'the bootstrap already ran on this VM (single use): nothing to do'
    exit 0
  }
  $imageConf = $env:HATCHERY_IMAGE_CONF
  if (-not $imageConf) { $imageConf = Join-Path $StateBase 'image.conf' }
  if (Test-Path -LiteralPath $imageConf -PathType Leaf) {
    $null = ConvertFrom-GuestConfig ([IO.File]::ReadAllText($imageConf)) $Cfg
  }
  $found = Get-GuestConfigText
  if ($null -eq $found) {
    if ($ConfigPath) {
      Write-Log "usage: windows.ps1 -ConfigPath <file> ($ConfigPath is not readable: nothing to do)"
      Stop-Machine 2
    }
    Write-Log 'no Hatchery config (state dir, config drive, metadata service): nothing to do'
    exit 0
  }
  $null = ConvertFrom-GuestConfig $found.Text $Cfg
  Remove-Item -LiteralPath $TeardownFile -Force -ErrorAction SilentlyContinue
  $vmName = $Cfg.HATCHERY_VM
  if (-not $vmName) { $vmName = '(unnamed)' }
  Write-Log "VM ${vmName}: bootstrap starting (config from $($found.Source))"

  $netError = Initialize-Network
  $channel = $Cfg.HATCHERY_CHANNEL
  if ($channel -notmatch '^https?://') {
    Write-Log 'no usable HATCHERY_CHANNEL: Windows guests report over http(s)://... only'
    Stop-Machine 1
  }
  [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor
    [Net.SecurityProtocolType]::Tls12
  [Net.ServicePointManager]::Expect100Continue = $false # one round trip per event, not two
  Write-Log "channel: http ($(($channel -split '\?')[0]))"
  Add-GuestEvent 'booted'
  if ($netError) { Stop-WithError "network: $netError" }

  Install-Runner
  Test-TeardownAsked
  Wait-Jit
  Start-Runner

  while (-not $script:Runner.HasExited) {
    Read-RunnerOutput
    Invoke-ChannelPump
    Test-TeardownAsked
    Start-Sleep -Milliseconds 500
  }
  $script:Runner.WaitForExit()
  Read-RunnerOutput
  $code = $script:Runner.ExitCode
  Write-Log "the runner exited with status $code"
  Add-GuestEvent 'runner-exited' "$code"
  Complete-Bootstrap 0
}

if ($env:HATCHERY_BOOTSTRAP_LIB -ne '1') { Invoke-Main }
