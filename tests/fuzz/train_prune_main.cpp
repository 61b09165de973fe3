// train_prune's main under another name, so the config harness can call the whole program in-process
// (the harness is the process's main: libFuzzer's, or replay_main.cpp's).
#define main train_prune_main
#include "apps/train_prune/main.cpp"
