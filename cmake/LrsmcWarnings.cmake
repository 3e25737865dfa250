# Warning flags for lrsmc's own targets (not for third-party code): link `lrsmc_warnings`.
add_library(lrsmc_warnings INTERFACE)
target_compile_options(lrsmc_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
                            -Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual>)
if(LRSMC_WERROR)
  target_compile_options(lrsmc_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
if(LRSMC_SANITIZE)
  target_compile_options(lrsmc_warnings INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer)
  target_link_options(lrsmc_warnings INTERFACE -fsanitize=address,undefined)
endif()
if(LRSMC_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "LRSMC_FUZZ needs clang (libFuzzer); got ${CMAKE_CXX_COMPILER_ID}")
  endif()
  # Coverage for libFuzzer in every lrsmc target; the fuzz target itself links -fsanitize=fuzzer.
  target_compile_options(lrsmc_warnings INTERFACE -fsanitize=fuzzer-no-link,address,undefined
                                                  -fno-sanitize-recover=undefined
                                                  -fno-omit-frame-pointer)
  target_link_options(lrsmc_warnings INTERFACE -fsanitize=address,undefined)
endif()
