# Installs the imclient component of the build tree into a fresh prefix, then configures and
# builds client-lib/examples against it with find_package(imclient): what an app developer does.
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_example.cmake: ${var} is not set")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --build ${BUILD_DIR} --target imclient)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --component imclient)

# Only the public headers are installed: no protobuf or Asio header is needed by an app.
file(GLOB_RECURSE installed_headers RELATIVE ${prefix}/include ${prefix}/include/*)
foreach(h ${installed_headers})
  if(NOT h MATCHES "^imclient/")
    message(FATAL_ERROR "unexpected installed header: ${h}")
  endif()
endforeach()

set(args -S ${SOURCE_DIR}/client-lib/examples -B ${WORK_DIR}/build -G ${GENERATOR}
         -DCMAKE_PREFIX_PATH=${prefix})
if(BUILD_TYPE)
  list(APPEND args -DCMAKE_BUILD_TYPE=${BUILD_TYPE})
endif()
if(CXX_FLAGS)
  list(APPEND args "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}")
endif()
if(LINK_FLAGS)
  list(APPEND args "-DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS}")
endif()
run(${CMAKE_COMMAND} ${args})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
if(NOT EXISTS ${WORK_DIR}/build/imclient-echo)
  message(FATAL_ERROR "imclient-echo was not built")
endif()
run(${WORK_DIR}/build/imclient-echo --help)
message(STATUS "imclient installed to ${prefix}; imclient-echo built against it")
