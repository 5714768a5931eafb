#pragma once
// The whole imclient API.
#include "imclient/client.hpp"
#include "imclient/cursor_store.hpp"
#include "imclient/types.hpp"
