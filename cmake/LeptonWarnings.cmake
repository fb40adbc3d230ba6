# Flags for lepton's own tests, examples and benches. Never attached to lepton::lepton.
add_library(lepton_dev_flags INTERFACE)
target_compile_options(lepton_dev_flags INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror>
  # GCC 12 + AVX-512 warns inside its own avx512fintrin.h (GCC bug 105593).
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-uninitialized -Wno-maybe-uninitialized>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CONFIG:Debug>>:-ftemplate-backtrace-limit=0>)
if(LEPTON_NATIVE)
  target_compile_options(lepton_dev_flags INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
# xtensor does not bounds-check by default; our tests do.
add_library(lepton_test_flags INTERFACE)
target_link_libraries(lepton_test_flags INTERFACE lepton_dev_flags)
target_compile_definitions(lepton_test_flags INTERFACE XTENSOR_ENABLE_ASSERT)
# Tests are compile-bound, not run-bound: -O1 halves their build time and still vectorises enough
# for the suite to run in seconds. (Examples and benches keep the build type's optimisation.)
option(LEPTON_TEST_O1 "Build tests at -O1 in optimised configurations" ON)
if(LEPTON_TEST_O1)
  target_compile_options(lepton_test_flags INTERFACE $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<NOT:$<CONFIG:Debug>>>:-O1>)
endif()
