// The only pybind11 translation unit: makes lowlight_core._C importable (loading it registers the
// ops in csrc/ops.cpp) and reports how the library was built.
#include <torch/extension.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lowlight fused kernels; the ops live in torch.ops.lowlight";
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.attr("torch_version") = TORCH_VERSION;
}
