// sm80 kernels for head dim 64.
#define SAGE_SM80_INSTANTIATE 64
#include "sm80/launch_sm80.cuh"
