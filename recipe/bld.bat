:: Windows twin of build.sh: installs the package into %PREFIX%.
@echo on
setlocal enabledelayedexpansion

:: Through a file: parentheses and quotes inside `for /f` are fragile in cmd.
"%PYTHON%" -c "import torch; print(torch.__version__.split('+')[0])" > torch_version.txt
if errorlevel 1 exit 1
set /p TORCH_VERSION=<torch_version.txt
del torch_version.txt
set "SAGEATTN_LOCAL_VERSION=%SAGEATTN_CUDA_TAG%torch%TORCH_VERSION%"

if "%SAGEATTN_CUDA_TAG%"=="cpu" (
  set "SAGEATTN_SKIP_CUDA_BUILD=1"
) else (
  if not defined CUDA_HOME set "CUDA_HOME=%LIBRARY_PREFIX%"
  rem torch's cpp_extension finds cl.exe through the activated vs2022 compiler package.
  set "DISTUTILS_USE_SDK=1"
)

"%PYTHON%" -m pip install . --no-deps --no-build-isolation -vv
if errorlevel 1 exit 1
