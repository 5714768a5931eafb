// Failpoints (test-only hooks, common/server/failpoints.hpp): the actions a test can arm.
#include "im/server/failpoints.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace im {
namespace {

TEST(Failpoints, ErrorTimesFailsExactlyNTimesThenNeverAgain) {
    Failpoints fp;
    fp.configure({"a=error_times(3)", "b=error_once"});
    EXPECT_TRUE(fp.any());
    int failures = 0;
    for (int i = 0; i < 10; ++i)
        failures += fp.eval("a") ? 1 : 0;
    EXPECT_EQ(failures, 3);
    EXPECT_TRUE(fp.eval("b"));
    EXPECT_FALSE(fp.eval("b"));
    EXPECT_FALSE(fp.eval("unknown"));
}

TEST(Failpoints, MalformedSpecsAreRefused) {
    Failpoints fp;
    EXPECT_THROW(fp.configure({"a=error_times(0)"}), std::invalid_argument);
    EXPECT_THROW(fp.configure({"a=error_times(x)"}), std::invalid_argument);
    EXPECT_THROW(fp.configure({"a=explode"}), std::invalid_argument);
    EXPECT_THROW(fp.configure({"noaction"}), std::invalid_argument);
}

}  // namespace
}  // namespace im
