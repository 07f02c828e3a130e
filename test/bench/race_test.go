//go:build race

package main

// raceBuild is whether the test binary has the race detector: the smoke
// test then builds logd and the ceiling with it too.
const raceBuild = true
