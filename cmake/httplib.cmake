# httplib::httplib for Debian's libcpp-httplib-dev. The package ships a compiled library whose
# classes were built with SSL, zlib and brotli support; every includer must see the same
# macros or the class layouts differ (see cpp-httplib.pc). The name matches upstream's CMake
# package. Included once from the top-level CMakeLists.txt.
find_package(Threads REQUIRED)
find_path(HTTPLIB_INCLUDE_DIR httplib.h REQUIRED)
find_library(HTTPLIB_LIBRARY cpp-httplib REQUIRED)
add_library(httplib::httplib UNKNOWN IMPORTED GLOBAL)
set_target_properties(httplib::httplib PROPERTIES
  IMPORTED_LOCATION "${HTTPLIB_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${HTTPLIB_INCLUDE_DIR}"
  INTERFACE_COMPILE_DEFINITIONS
    "CPPHTTPLIB_OPENSSL_SUPPORT;CPPHTTPLIB_ZLIB_SUPPORT;CPPHTTPLIB_BROTLI_SUPPORT"
  INTERFACE_LINK_LIBRARIES Threads::Threads)
