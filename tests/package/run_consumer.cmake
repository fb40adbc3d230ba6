# Driver of the package tests, run by ctest as `cmake -D... -P run_consumer.cmake`.
#   MODE=install         cmake --install LEPTON_BINARY_DIR into a fresh PREFIX (the fixture's setup)
#   MODE=find_package    configure+build+run the consumer with CMAKE_PREFIX_PATH=PREFIX
#   MODE=add_subdirectory   ... with LEPTON_SOURCE_DIR added as a subdirectory
#   MODE=fetch_content   ... fetching lepton with FetchContent from the checkout's git repository
# Common: CONSUMER_DIR (the consumer's source), WORK_DIR (scratch, wiped first), GENERATOR,
# MAKE_PROGRAM, CXX_COMPILER, BUILD_TYPE, LEPTON_SOURCE_DIR.
cmake_minimum_required(VERSION 3.25)

function(run)
  string(JOIN " " pretty ${ARGN})
  message(STATUS "$ ${pretty}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${pretty}")
  endif()
endfunction()

if(MODE STREQUAL "install")
  file(REMOVE_RECURSE ${PREFIX})
  run(${CMAKE_COMMAND} --install ${LEPTON_BINARY_DIR} --prefix ${PREFIX})
  file(GLOB_RECURSE config ${PREFIX}/*/leptonConfig.cmake)
  if(NOT config OR NOT EXISTS ${PREFIX}/include/lepton/core/tensor.hpp)
    message(FATAL_ERROR "install into ${PREFIX} did not produce leptonConfig.cmake and the headers")
  endif()
  message(STATUS "installed lepton into ${PREFIX}: ${config}")
  return()
endif()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(args -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
if(MAKE_PROGRAM)
  list(APPEND args -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM})
endif()

if(MODE STREQUAL "find_package")
  list(APPEND args -DCMAKE_PREFIX_PATH=${PREFIX} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
elseif(MODE STREQUAL "add_subdirectory")
  list(APPEND args -DLEPTON_SOURCE_DIR=${LEPTON_SOURCE_DIR})
elseif(MODE STREQUAL "fetch_content")
  # FetchContent clones committed state. Normally that is the checkout's own repository at its HEAD
  # commit (CI: a fresh clone, so HEAD is exactly what is being tested). A checkout without any commit
  # yet, or SNAPSHOT=ON (LEPTON_TEST_FETCH_WORKTREE), is snapshotted into a throw-away repository
  # (working tree, .gitignore honoured), leaving the checkout's .git untouched.
  find_package(Git REQUIRED)
  execute_process(COMMAND ${GIT_EXECUTABLE} -C ${LEPTON_SOURCE_DIR} rev-parse --verify -q "HEAD^{commit}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE head OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc EQUAL 0 AND NOT SNAPSHOT)
    set(repo ${LEPTON_SOURCE_DIR})
    message(STATUS "fetching lepton from file://${repo} at HEAD ${head} (committed state only)")
  else()
    set(repo ${WORK_DIR}/snapshot.git)
    set(git ${GIT_EXECUTABLE} --git-dir=${repo} --work-tree=${LEPTON_SOURCE_DIR}
            -c user.name=lepton-package-test -c user.email=package-test@lepton.invalid -c commit.gpgsign=false)
    run(${git} init -q -b main)
    run(${git} add -A)
    run(${git} commit -q -m "snapshot of the working tree for the FetchContent test")
    execute_process(COMMAND ${git} rev-parse HEAD OUTPUT_VARIABLE head OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(SNAPSHOT)
      message(STATUS "fetching a snapshot of the working tree of ${LEPTON_SOURCE_DIR} (${repo}, ${head})")
    else()
      message(WARNING "${LEPTON_SOURCE_DIR} has no commit yet: fetching a snapshot of its working tree "
                      "(${repo}, ${head}) instead")
    endif()
  endif()
  list(APPEND args -DLEPTON_GIT_REPOSITORY=file://${repo} -DLEPTON_GIT_TAG=${head}
                   -DFETCHCONTENT_UPDATES_DISCONNECTED=ON)
else()
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()

list(APPEND args ${EXTRA_ARGS})
run(${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK_DIR}/build -G ${GENERATOR} ${args})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
