# Builds the Windows one-folder app dist\mirage\ (mirage.exe, a windowed app with the Mirage icon).
# Not run on the Linux development machine: it is the documented recipe, kept in step with build_linux.sh.
#
# Requirements: Windows 10/11 x64, Python 3.11 from python.org (with "py" launcher), PowerShell 5+.
# Usage (from the repository root or anywhere):
#   powershell -ExecutionPolicy Bypass -File packaging\build_windows.ps1          # CPU torch
#   powershell -ExecutionPolicy Bypass -File packaging\build_windows.ps1 -Cuda    # CUDA 12 torch (NVIDIA GPUs)
#
# Notes:
# - The CUDA bundle is several GB (torch's CUDA libraries); the CPU one is much smaller but slow for LivePortrait.
# - onnxruntime-gpu's CUDA provider needs the CUDA 12 + cuDNN 9 DLLs: torch's CUDA build ships them.
# - The icon: PyInstaller turns resources\icon.png into an .ico (Pillow is installed for that).
# - The virtual camera: OBS Studio's Virtual Camera or Unity Capture must be installed (see docs/install.md).
# - mirage.exe is a GUI app (no console); run `mirage.exe --headless ...` from pip-installed Mirage for console use.
# - Zip dist\mirage for distribution, or wrap it in an installer (Inno Setup / NSIS) that adds a Start menu entry.
param(
    [switch]$Cuda,
    [string]$TorchVersion = "2.13.0",
    [string]$CudaIndex = "https://download.pytorch.org/whl/cu128"
)
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..")

if (-not (Test-Path ".venv\Scripts\python.exe")) { py -3.11 -m venv .venv }
$py = ".venv\Scripts\python.exe"
& $py -m pip install -q "pip==26.3"
if ($Cuda) {
    & $py -m pip install -q "torch==$TorchVersion" --index-url $CudaIndex
} else {
    & $py -m pip install -q "torch==$TorchVersion" --index-url "https://download.pytorch.org/whl/cpu"
}
# Then exactly what requirements.lock pins (hash-checked; PyInstaller and Pillow included), then Mirage itself.
& $py -m pip install -q --no-deps --require-hashes -r requirements.lock
if ($LASTEXITCODE -ne 0) { throw "pip install -r requirements.lock failed" }
& $py -m pip install -q --no-deps --no-build-isolation -e .
& $py -m pip check
if ($LASTEXITCODE -ne 0) { throw "pip install failed" }

& $py -m PyInstaller --noconfirm --clean --distpath dist --workpath build\pyinstaller packaging\mirage.spec
if ($LASTEXITCODE -ne 0 -or -not (Test-Path "dist\mirage\mirage.exe")) { throw "The build failed; see the output above." }

$weights = Get-ChildItem -Recurse dist\mirage -Include *.pth, *.onnx, *.safetensors
if ($weights) { throw "Model weights found in the bundle, which must never ship them: $($weights -join ', ')" }

$size = (Get-ChildItem -Recurse dist\mirage | Measure-Object -Property Length -Sum).Sum / 1MB
Write-Host ("Bundle: dist\mirage ({0:N0} MB). Start: dist\mirage\mirage.exe" -f $size)
Write-Host "Zip it: Compress-Archive dist\mirage dist\mirage-windows-x64.zip"
