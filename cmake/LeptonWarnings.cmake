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
