# One layering probe, run by CTest (see CMakeLists.txt here): preprocesses a file that holds
# only `#include "<HEADER>"` with exactly the include directories of one library's sources.
#   cmake -DCXX=<compiler> -DINCLUDES=<dirs joined by |> -DHEADER=<layer/file.h>
#         -DEXPECT=<hidden|visible> -DSOURCE=<probe file to write> -P probe.cmake
# hidden: the compiler must fail *because the header is not found*; any other outcome (it
#         compiles, or fails for another reason) fails the test.
# visible: it must succeed; this is the control that shows a probe can pass.
foreach(var CXX INCLUDES HEADER EXPECT SOURCE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "probe.cmake: -D${var}= is missing")
  endif()
endforeach()
file(WRITE ${SOURCE} "#include \"${HEADER}\"\n")
string(REPLACE "|" ";" dirs "${INCLUDES}")
set(flags)
foreach(d IN LISTS dirs)
  list(APPEND flags "-I${d}")
endforeach()
execute_process(COMMAND ${CXX} -std=c++20 -E -o /dev/null ${flags} ${SOURCE}
                RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(EXPECT STREQUAL "hidden")
  if(rc EQUAL 0)
    message(FATAL_ERROR "${HEADER} is reachable from ${INCLUDES}, which breaks the layering")
  endif()
  if(NOT err MATCHES "${HEADER}: No such file or directory")
    message(FATAL_ERROR "the probe failed for another reason than a hidden header:\n${err}")
  endif()
  message(STATUS "${HEADER} is hidden, as it must be")
elseif(EXPECT STREQUAL "visible")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${HEADER} must be reachable from ${INCLUDES}:\n${err}")
  endif()
  message(STATUS "${HEADER} is visible, as it must be")
else()
  message(FATAL_ERROR "probe.cmake: EXPECT must be hidden or visible, not '${EXPECT}'")
endif()
