# Creates lepton::cuda when a CUDA compiler is available (LEPTON_CUDA=AUTO|ON|OFF).
# CMake 3.25 cannot request C++20 for CUDA itself, so -std=c++20 is passed explicitly (TOOLCHAIN.md).
set(LEPTON_HAS_CUDA OFF)
if(NOT LEPTON_CUDA STREQUAL "OFF")
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures (default: Hopper sm_90)")
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(LEPTON_HAS_CUDA ON)
  elseif(LEPTON_CUDA STREQUAL "ON")
    message(FATAL_ERROR "lepton: LEPTON_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  endif()
endif()

if(LEPTON_HAS_CUDA)
  add_library(lepton_cuda INTERFACE)
  add_library(lepton::cuda ALIAS lepton_cuda)
  set_target_properties(lepton_cuda PROPERTIES EXPORT_NAME cuda)
  target_include_directories(lepton_cuda INTERFACE
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/cuda/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(lepton_cuda INTERFACE lepton::lepton CUDA::cudart CUDA::cublas CUDA::cublasLt)
  target_compile_options(lepton_cuda INTERFACE
    $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 --extended-lambda --expt-relaxed-constexpr>)
endif()
