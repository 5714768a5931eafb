# Every third-party dependency is found here once, as an imported target the modules link.
# All come from Debian packages (scripts/install-deps.sh); nothing is downloaded.
find_package(Threads REQUIRED)
find_package(Protobuf 3.21 REQUIRED)
# The client library (always built) needs Boost headers (Asio/Beast) and OpenSSL too.
find_package(Boost 1.74 REQUIRED COMPONENTS system)
find_package(OpenSSL REQUIRED)

if(IM_BUILD_SERVERS OR IM_BUILD_TESTS)
  find_package(spdlog REQUIRED)
  find_package(fmt REQUIRED)
  find_package(yaml-cpp REQUIRED)
  find_package(nlohmann_json 3 REQUIRED)
  find_package(CLI11 REQUIRED)
  find_package(prometheus-cpp REQUIRED)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
  pkg_check_modules(LDAP REQUIRED IMPORTED_TARGET ldap)
  pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
  find_package(rabbitmq-c REQUIRED)

  # MySQL Connector/C++ 1.1 ships neither a CMake config nor a .pc file.
  find_path(MYSQLCPPCONN_INCLUDE_DIR NAMES mysql_driver.h REQUIRED)
  find_library(MYSQLCPPCONN_LIBRARY NAMES mysqlcppconn REQUIRED)
  add_library(mysqlcppconn::mysqlcppconn UNKNOWN IMPORTED)
  set_target_properties(mysqlcppconn::mysqlcppconn PROPERTIES
    IMPORTED_LOCATION ${MYSQLCPPCONN_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${MYSQLCPPCONN_INCLUDE_DIR})
endif()

if(IM_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
