# SPDX-License-Identifier: BSD-3-Clause
# cmake -DLOCK=<Cargo.lock> -DCOPY=<its copy from configure time> -P cargo-lock-check.cmake
# Fails when cargo rewrote the committed lock file during the build.
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${COPY} ${LOCK}
                RESULT_VARIABLE differ)
if(differ)
  message(FATAL_ERROR "cargo rewrote ${LOCK}: the committed lock file does not match "
    "the dependencies (Cargo.toml, zepto-kernel, or the zephyr-lang-rust revision of "
    "west.yml). Check the change with git diff, commit it, and build pristine.")
endif()
