// pt::Error, PT_CHECK and PT_FAIL live in the lowest layer (base/error.h); tensor/ code includes them from here.
#pragma once
#include "base/error.h"
