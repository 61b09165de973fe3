// Mirroring one triangle of a row-major n×n matrix onto the other (A[r][c] = A[c][r] on the written side) as a
// tiled transpose: each block owns one kMirrorTile² tile of the triangle it writes, reads the transposed source
// tile row by row into shared memory and writes its tile row by row, so both the global reads and the global
// writes are coalesced (a one-thread-per-element mirror reads a column, one 4-byte word per 32-byte sector).
//
// The per-thread steps are plain functions here, without CUDA headers: the kernel (tensor/ops/linalg.cu) is
// the load step, a barrier and the store step, and a CPU test runs the same steps over every block and thread.
#pragma once
#include <cstdint>

#include "tensor/cuda/launch.h"

namespace pt::cuda {

inline constexpr int kMirrorTile = 32;  // tile edge = threads per block row (one warp reads one tile row)
inline constexpr int kMirrorRows = 8;   // block rows; a thread handles kMirrorTile / kMirrorRows tile rows

// Blocks per grid dimension (the grid is square, tiles × tiles; blocks off the written triangle exit at once).
constexpr unsigned mirror_tiles(int64_t n) { return unsigned(n > 0 ? (n + kMirrorTile - 1) / kMirrorTile : 1); }

// Origin of the tile block (bx, by) writes: tile row by, tile column bx. Only tiles that meet the written
// triangle (on or below the diagonal for the lower one) are active; their source tile, the transpose, lies
// on or above the diagonal, which no block writes.
struct MirrorTile {
  int64_t row0, col0;
  bool active;
};
PT_HOST_DEVICE MirrorTile mirror_tile(unsigned bx, unsigned by, bool to_lower) {
  return {int64_t(by) * kMirrorTile, int64_t(bx) * kMirrorTile, to_lower ? by >= bx : bx >= by};
}

// Load step of thread (tx, ty): source rows col0 + k (k = ty, ty + kMirrorRows, ...), column row0 + tx, so a
// warp reads kMirrorTile consecutive elements of one row. tile[k][tx] = A[col0 + k][row0 + tx].
template <class T>
PT_HOST_DEVICE void mirror_load(const T* a, int64_t n, int64_t ld, MirrorTile t, int tx, int ty,
                                       T (*tile)[kMirrorTile + 1]) {
  for (int k = ty; k < kMirrorTile; k += kMirrorRows) {
    const int64_t r = t.col0 + k, c = t.row0 + tx;
    if (r < n && c < n) tile[k][tx] = a[r * ld + c];
  }
}

// Store step of thread (tx, ty): destination rows row0 + k, column col0 + tx (consecutive in a warp), from
// tile[tx][k] = A[col0 + tx][row0 + k]: the transpose. Only elements strictly inside the written triangle.
template <class T>
PT_HOST_DEVICE void mirror_store(T* a, int64_t n, int64_t ld, MirrorTile t, int tx, int ty, bool to_lower,
                                        const T (*tile)[kMirrorTile + 1]) {
  for (int k = ty; k < kMirrorTile; k += kMirrorRows) {
    const int64_t r = t.row0 + k, c = t.col0 + tx;
    if (r < n && c < n && (to_lower ? r > c : r < c)) a[r * ld + c] = tile[tx][k];
  }
}

}  // namespace pt::cuda
