// CRC32C (Castagnoli) for RocksDB's WAL and block checksums, with the CPU's crc32 instruction.
//
// Debian builds RocksDB portable, so its crc32c::Extend is a byte-table loop: ~5 % of a durable
// webhook's CPU went to checksumming the WAL (bench/RESULTS.md, session 21). With RocksDB linked
// statically on x86-64 (SWITCHYARD_ROCKSDB_CRC32C_OVERRIDE, set by CMake), crc32c.cc defines the
// three functions of RocksDB's crc32c.cc.o (Extend, Crc32cCombine, IsFastCrc32Supported); the
// linker then never takes that archive member, and RocksDB calls these. The checksums are the
// same bits: only the speed differs. Should a later RocksDB need anything else from that member,
// the link fails with a duplicate symbol (loud, not wrong). RocksDB's info LOG names the
// implementation at open ("Fast CRC32 supported: ... (switchyard, sse4.2)").
//
// Thread-safe; no state after the first call's CPU probe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace switchyard::storage::crc32c {

// What RocksDB checksums with: "sse4.2" (the crc32 instruction) or "table" when this file's
// override is linked, "rocksdb" (RocksDB's own) when it is not. Calling it from the store also
// makes the linker take this file's object (and with it the override) out of our archive.
const char* Implementation();

// CRC32C of concat(A, data[0, n)), where `crc` is the CRC32C of A (0 for the empty string).
uint32_t Extend(uint32_t crc, const char* data, size_t n);
// The same, byte table only (the reference the tests compare the instruction against).
uint32_t ExtendPortable(uint32_t crc, const char* data, size_t n);
// CRC32C of concat(A, B) from crc1 = CRC32C(A), crc2 = CRC32C(B) and B's length.
uint32_t Combine(uint32_t crc1, uint32_t crc2, size_t len2);

}  // namespace switchyard::storage::crc32c
