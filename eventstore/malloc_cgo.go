//go:build cgo && linux

package eventstore

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
static int tally_glibc(void) { return 1; }
static int tally_tune_malloc(int arenas, int mmap_threshold) {
	return mallopt(M_ARENA_MAX, arenas) == 1 && mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1;
}
#else
static int tally_glibc(void) { return 1; }
static int tally_glibc(void) { return 0; }
static int tally_tune_malloc(int arenas, int mmap_threshold) { return 0; }
#endif
*/
import "C"

// tuneMalloc sets glibc's malloc for the id index's memory. Built with cgo,
// pebble allocates its block cache and memtables with C malloc (outside the
// Go heap); with glibc's defaults (up to 8 arenas a core, and an mmap
// threshold that rises to the size of the last large block freed, so that
// 4 MiB memtables come from an arena and are not given back) that memory
// grew with the events indexed although pebble's own count of it stayed at
// 13-17 MiB. Measured (a 10M-row ingest, nats-server apart): the memory
// outside the Go heap rose from 54 to 100 MiB over the append; with 2
// arenas and a fixed 128 KiB mmap threshold it stayed at 41-49 MiB. Either
// variable set in the environment (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_)
// is left to glibc. It reports whether it changed anything.
func tuneMalloc(getenv func(string) string) bool {
	if getenv("MALLOC_ARENA_MAX") != "" || getenv("MALLOC_MMAP_THRESHOLD_") != "" {
		return false
	}
	return C.tally_tune_malloc(mallocArenas, mallocMmapThreshold) == 1
}

// glibcMalloc: the process's C library is glibc, whose malloc tuneMalloc
// sets.
func glibcMalloc() bool { return C.tally_glibc() == 1 }
