# Packer's shutdown command: generalizes the image (sysprep) and shuts the build VM down.
#   seal.ps1 -Login none     (OpenStack, QEMU): the Administrator account disabled with a random
#                            password nobody sees, WinRM disabled and its firewall rule removed
#   seal.ps1 -Login vagrant  the same for Administrator; WinRM stays for Vagrant's login
# Each VM made from the image runs the specialize and oobeSystem passes of the answer file
# written here, then boots straight to the startup task (no OOBE screen).
param([ValidateSet('none', 'vagrant')][string]$Login = 'none')
$ErrorActionPreference = 'Stop'

# A random Administrator password: only in the answer file, which Windows Setup scrubs of
# passwords once it has used it; never printed.
$bytes = New-Object byte[] 24
[Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($bytes)
$random = [Convert]::ToBase64String($bytes) + 'aA1!'

$specialize = @('net.exe user Administrator /active:no')
if ($Login -eq 'none') {
  $specialize += @(
    'sc.exe config WinRM start= disabled',
    'netsh.exe advfirewall firewall delete rule name=all dir=in protocol=tcp localport=5985'
  )
}
$commands = ''
for ($i = 0; $i -lt $specialize.Count; $i++) {
  $commands += @"
        <RunSynchronousCommand wcm:action="add">
          <Order>$($i + 1)</Order>
          <Path>$($specialize[$i])</Path>
        </RunSynchronousCommand>

"@
}
$answer = @"
<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend" xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State">
  <settings pass="specialize">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <ComputerName>*</ComputerName>
      <TimeZone>UTC</TimeZone>
    </component>
    <component name="Microsoft-Windows-Deployment" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <RunSynchronous>
$commands      </RunSynchronous>
    </component>
  </settings>
  <settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <UserAccounts>
        <AdministratorPassword>
          <Value>$random</Value>
          <PlainText>true</PlainText>
        </AdministratorPassword>
      </UserAccounts>
      <OOBE>
        <HideEULAPage>true</HideEULAPage>
        <HideWirelessSetupInOOBE>true</HideWirelessSetupInOOBE>
        <NetworkLocation>Work</NetworkLocation>
        <ProtectYourPC>3</ProtectYourPC>
        <SkipMachineOOBE>true</SkipMachineOOBE>
      </OOBE>
    </component>
  </settings>
</unattend>
"@
$file = 'C:\Windows\Panther\hatchery-vm.xml'
[IO.File]::WriteAllText($file, $answer, (New-Object Text.UTF8Encoding $false))
& icacls.exe $file /inheritance:r /grant:r 'SYSTEM:F' 'Administrators:F' | Out-Null

# Nothing of the build stays: uploads, the autologon, leftovers of a bootstrap.
Remove-Item -Recurse -Force -ErrorAction SilentlyContinue 'C:\Windows\Temp\hatchery'
Remove-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon' `
  -Name DefaultPassword -ErrorAction SilentlyContinue
Get-ChildItem -Path (Join-Path $env:ProgramData 'Hatchery\*') -Exclude 'image.conf' -ErrorAction SilentlyContinue |
  Remove-Item -Force -Recurse

& "$env:SystemRoot\System32\Sysprep\sysprep.exe" /generalize /oobe /shutdown /quiet "/unattend:$file"
