# im_target_defaults(<target>): the project's compile options, applied per target (never globally).
# Warnings are errors; -Wconversion/-Wshadow as in muduo. Boost.Asio 1.74's awaitable.hpp forgets
# <utility>, so it is force-included (see ENVIRONMENT.md).
function(im_target_defaults target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Werror -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
    -Wcast-align -Woverloaded-virtual -Wformat=2 -Wimplicit-fallthrough
    -Wconversion -Wsign-conversion -Wmisleading-indentation
    # GCC-only warnings (clang builds the fuzz targets: scripts/fuzz).
    $<$<CXX_COMPILER_ID:GNU>:-Wduplicated-cond -Wlogical-op>
    $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>  # GCC 12 false positives in std::string (GCC bug 105651)
    # GCC 12 under -fsanitize flags Asio's coroutine frame operator delete as mismatched (a false
    # positive of the sanitizer build only).
    $<$<CONFIG:Asan>:-Wno-mismatched-new-delete>
    # Asio and libstdc++ use atomic_thread_fence, which TSan does not model (GCC warns under -Werror).
    $<$<CONFIG:Tsan>:-Wno-tsan -Wno-mismatched-new-delete>
    -include utility)
  target_compile_definitions(${target} PRIVATE
    BOOST_ASIO_NO_DEPRECATED BOOST_BEAST_USE_STD_STRING_VIEW SPDLOG_FMT_EXTERNAL
    # Boost 1.74 enables co_await for clang only with libc++'s <experimental/coroutine>; clang 14
    # has C++20 coroutines and libstdc++'s <coroutine> works (the clang fuzz build).
    $<$<CXX_COMPILER_ID:Clang>:BOOST_ASIO_HAS_CO_AWAIT=1>)
endfunction()

# Generated code (protobuf) gets warnings but not -Werror or the pedantic set.
function(im_generated_defaults target)
  target_compile_options(${target} PRIVATE -w)
endfunction()
