package log

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	for _, p := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		dir := t.TempDir()
		cfg := DefaultConfig(dir)
		cfg.Sync = p
		cfg.MaxStoreBytes = 4096
		cfg.MaxRecordBytes = 1000
		l, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			off, err := l.Append([]byte(fmt.Sprintf("rec-%d-%0100d", i, 0)))
			if err != nil || off != uint64(i) {
				t.Fatal(off, err)
			}
		}
		if _, err := l.AppendBatch([][]byte{[]byte("a"), []byte("b")}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			r, err := l.Read(uint64(i))
			if err != nil || string(r.Value) != fmt.Sprintf("rec-%d-%0100d", i, 0) {
				t.Fatal(i, err, string(r.Value))
			}
		}
		rd := l.NewReader(0)
		n := 0
		for {
			r, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Offset != uint64(n) {
				t.Fatal(r.Offset, n)
			}
			n++
		}
		if n != 102 {
			t.Fatal(n)
		}
		t.Log(p, l.Stats())
		go func() { time.Sleep(10 * time.Millisecond); l.Append([]byte("late")) }()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := l.Wait(ctx, 102); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err = Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(l.Recovery(), l.Stats())
		if r, err := l.Read(102); err != nil || string(r.Value) != "late" {
			t.Fatal(err)
		}
		if _, err := l.Read(103); err == nil {
			t.Fatal("want err")
		} else {
			t.Log(err)
		}
		l.Close()
	}
}
