# Creates lepton::mpi (INTERFACE: lepton::lepton + MPI) when MPI is found (LEPTON_MPI=AUTO|ON|OFF).
# <lepton/dist.hpp> needs it: lepton::dist uses MPI's C API only, so the deprecated MPI-2 C++
# bindings are switched off (MPI_CXX_SKIP_MPICXX). Sets LEPTON_HAS_MPI and, for tests,
# LEPTON_MPIEXEC (the launcher) and LEPTON_MPIEXEC_FLAGS (OpenMPI: run as root, oversubscribe).
set(LEPTON_MPI "AUTO" CACHE STRING "Build the MPI target lepton::mpi: AUTO, ON or OFF")
set_property(CACHE LEPTON_MPI PROPERTY STRINGS AUTO ON OFF)
set(LEPTON_HAS_MPI OFF)
if(NOT LEPTON_MPI STREQUAL "OFF")
  set(MPI_CXX_SKIP_MPICXX ON CACHE BOOL "Skip the deprecated MPI-2 C++ bindings")
  if(LEPTON_MPI STREQUAL "ON")
    find_package(MPI REQUIRED COMPONENTS CXX)
  else()
    find_package(MPI COMPONENTS CXX)
  endif()
  if(MPI_CXX_FOUND)
    set(LEPTON_HAS_MPI ON)
  endif()
endif()

if(LEPTON_HAS_MPI)
  add_library(lepton_mpi INTERFACE)
  add_library(lepton::mpi ALIAS lepton_mpi)
  set_target_properties(lepton_mpi PROPERTIES EXPORT_NAME mpi)
  target_link_libraries(lepton_mpi INTERFACE lepton::lepton MPI::MPI_CXX)
  target_compile_definitions(lepton_mpi INTERFACE OMPI_SKIP_MPICXX MPICH_SKIP_MPICXX)

  set(LEPTON_MPIEXEC "${MPIEXEC_EXECUTABLE}")
  set(LEPTON_MPIEXEC_FLAGS "")
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE lepton_mpiexec_version ERROR_QUIET TIMEOUT 20)
  if(lepton_mpiexec_version MATCHES "Open MPI|OpenRTE")
    # Containers and CI run as root; CI machines may have fewer cores than ranks.
    set(LEPTON_MPIEXEC_FLAGS --allow-run-as-root --oversubscribe)
  endif()
  string(REGEX MATCH "[^\n]*" lepton_mpiexec_version "${lepton_mpiexec_version}")
  message(STATUS "lepton: MPI ${MPI_CXX_VERSION} found: lepton::mpi, launcher ${LEPTON_MPIEXEC} (${lepton_mpiexec_version})")
else()
  message(STATUS "lepton: MPI not found (or LEPTON_MPI=OFF): no lepton::mpi, the dist tests and example are skipped")
endif()

# lepton::nccl: the NCCL path of lepton::dist (<lepton/cuda/nccl.cuh>), when CUDA, MPI and NCCL
# (shipped with the CUDA toolkit here) are all there. Sets LEPTON_HAS_NCCL.
set(LEPTON_HAS_NCCL OFF)
if(LEPTON_HAS_MPI AND LEPTON_HAS_CUDA)
  find_library(LEPTON_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib
               ${CUDAToolkit_LIBRARY_ROOT}/lib64)
  find_path(LEPTON_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
  if(LEPTON_NCCL_LIBRARY AND LEPTON_NCCL_INCLUDE_DIR)
    add_library(lepton_nccl INTERFACE)
    add_library(lepton::nccl ALIAS lepton_nccl)
    set_target_properties(lepton_nccl PROPERTIES EXPORT_NAME nccl)
    target_include_directories(lepton_nccl INTERFACE ${LEPTON_NCCL_INCLUDE_DIR})
    target_link_libraries(lepton_nccl INTERFACE lepton::cuda lepton::mpi ${LEPTON_NCCL_LIBRARY})
    set(LEPTON_HAS_NCCL ON)
    message(STATUS "lepton: NCCL found (${LEPTON_NCCL_LIBRARY}): lepton::nccl")
  else()
    message(STATUS "lepton: NCCL not found: no lepton::nccl")
  endif()
endif()
