// Where the test program finds what it reads and runs. Nothing of the build machine is compiled in, so the same
// binary runs from the build tree, from an installed GPU kit, or from a copy on another machine:
//   source_dir()  the repository (golden fixtures, configs, data link): $PT_SOURCE_DIR, else the first folder
//                 holding tests/golden/ among the working directory, the executable's folder and their parents;
//   app_dir()     the apps the end-to-end tests launch (train_prune, pretrain): $PT_APP_DIR, else the executable's
//                 folder or its parent, whichever holds train_prune;
//   work_dir()    a writable folder for runs shared between test processes: $PT_TEST_WORK_DIR, else app_dir().
// A folder that cannot be found stops the program with one line saying what to set.
#pragma once
#include <string>

namespace pt::test {

const std::string& source_dir();
const std::string& app_dir();
const std::string& work_dir();

}  // namespace pt::test

