// Installed by llmops.gpu_stack.cuda: proves that the toolkit compiles, links and, where a GPU
// is present, runs a kernel. Prints one line per device in PCI bus order:
//   <index> <compute capability> <kernel ran: 1> <name>
#include <cstdio>
#include <cuda_runtime.h>

__global__ void mark(int *out) { *out = 1; }

int main() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    std::fprintf(stderr, "cudaGetDeviceCount: %s\n", cudaGetErrorString(err));
    return 2;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    int *flag = nullptr;
    int ran = 0;
    if ((err = cudaSetDevice(i)) != cudaSuccess || (err = cudaGetDeviceProperties(&prop, i)) != cudaSuccess ||
        (err = cudaMalloc(&flag, sizeof(int))) != cudaSuccess || (err = cudaMemset(flag, 0, sizeof(int))) != cudaSuccess) {
      std::fprintf(stderr, "device %d: %s\n", i, cudaGetErrorString(err));
      return 3;
    }
    mark<<<1, 1>>>(flag);
    if ((err = cudaDeviceSynchronize()) != cudaSuccess ||
        (err = cudaMemcpy(&ran, flag, sizeof(int), cudaMemcpyDeviceToHost)) != cudaSuccess) {
      std::fprintf(stderr, "device %d kernel: %s\n", i, cudaGetErrorString(err));
      return 4;
    }
    cudaFree(flag);
    std::printf("%d %d.%d %d %s\n", i, prop.major, prop.minor, ran, prop.name);
  }
  return 0;
}
