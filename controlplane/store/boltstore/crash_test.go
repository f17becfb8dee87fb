// SPDX-License-Identifier: Apache-2.0

package boltstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/weft-mesh/weft/controlplane/store"
)

// helperEnv names the store file helperWriter writes to; it is set only
// in the child process that TestCrashRecovery starts.
const helperEnv = "WEFT_BOLTSTORE_HELPER_DB"

const (
	crashRounds  = 3
	crashAcks    = 200 // acknowledged writes before each SIGKILL
	crashHistory = 100 // history limit of the writer: the log gets trimmed
)

// crashValue is the value of the three keys of transaction n. Its size
// varies, so transactions span one or several pages.
func crashValue(n int64) []byte {
	return []byte(strconv.FormatInt(n, 10) + ":" + strings.Repeat("x", int(n*37%5000)))
}

func crashKeys(n int64) []string {
	return []string{fmt.Sprintf("a/%08d", n), fmt.Sprintf("b/%08d", n), fmt.Sprintf("c/%08d", n)}
}

// TestMain runs helperWriter instead of the tests when the test binary is
// started as TestCrashRecovery's child process.
func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		helperWriter(path)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperWriter is the child process of TestCrashRecovery. It commits
// transactions 1, 2, ... after the file's revision, each writing the three
// keys of crashKeys, and prints "ack N" once Update has returned for N, until
// it is killed.
func helperWriter(path string) {
	s, err := Open(path, Options{HistoryLimit: crashHistory}, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	var rev int64
	if err := s.View(context.Background(), func(r store.Reader) error { rev = r.Revision(); return nil }); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("start", rev)
	// A bound, in case the parent dies without killing us.
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		n := rev + 1
		value := crashValue(n)
		got, err := s.Update(context.Background(), func(tx store.Txn) error {
			for _, k := range crashKeys(n) {
				if err := tx.Put(k, value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || got != n {
			fmt.Println("error", got, err)
			os.Exit(2)
		}
		fmt.Println("ack", n)
		rev = n
	}
	os.Exit(3)
}

// TestCrashRecovery kills a writer process with SIGKILL in the middle of its
// stream of transactions, three times on the same file, and checks after
// each kill that every acknowledged transaction is there in full, none is
// there in part, and the change log matches the data.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs a writer process three times")
	}
	path := filepath.Join(t.TempDir(), "weft.db")
	var lastAcked int64
	for round := range crashRounds {
		start := time.Now()
		first, acked := runWriterUntilKilled(t, path, round == 0)
		if first != lastAcked && first != lastAcked+1 {
			t.Fatalf("round %d: writer started after revision %d, want %d or %d", round, first, lastAcked, lastAcked+1)
		}
		rev := verifyCrashFile(t, path, acked)
		t.Logf("round %d: killed after ack %d, recovered revision %d, in %s", round, acked, rev, time.Since(start).Round(time.Millisecond))
		lastAcked = acked
	}
}

// runWriterUntilKilled runs helperWriter on path, kills it with SIGKILL
// after crashAcks acknowledgements, and returns the revision it started
// after and the last revision it acknowledged. With checkLock, it first
// checks that Open fails while the writer holds the file.
func runWriterUntilKilled(t *testing.T, path string, checkLock bool) (start, lastAck int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start writer: %v", err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	sc := bufio.NewScanner(stdout)
	started := false
	acks := 0
	for sc.Scan() {
		line := sc.Text()
		if s, ok := strings.CutPrefix(line, "start "); ok {
			start, err = strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("writer: %q", line)
			}
			started = true
			continue
		}
		s, ok := strings.CutPrefix(line, "ack ")
		if !ok {
			if strings.HasPrefix(line, "error") {
				t.Fatalf("writer: %s", line)
			}
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || !started || n != start+int64(acks)+1 {
			t.Fatalf("writer: unexpected %q after %d acks from revision %d", line, acks, start)
		}
		lastAck = n
		acks++
		if acks == 1 && checkLock {
			checkLockedByOtherProcess(t, path)
		}
		if acks == crashAcks {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatalf("kill writer: %v", err)
			}
			killed = true
			break
		}
	}
	if !killed {
		t.Fatalf("writer stopped after %d acks: %v\n%s", acks, sc.Err(), stderr.String())
	}
	// Acks the writer printed before it died count too.
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n == lastAck+1 {
				lastAck = n
			}
		}
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(exitErr.Error(), "killed") {
		t.Fatalf("writer did not die of SIGKILL: %v\n%s", err, stderr.String())
	}
	return start, lastAck
}

// checkLockedByOtherProcess checks that Open fails clearly while another
// process holds the file.
func checkLockedByOtherProcess(t *testing.T, path string) {
	t.Helper()
	begin := time.Now()
	s, err := Open(path, Options{Timeout: 200 * time.Millisecond}, nil)
	if err == nil {
		_ = s.Close()
		t.Fatal("Open while another process holds the file: got nil error")
	}
	if !errors.Is(err, ErrLocked) || time.Since(begin) > 5*time.Second {
		t.Fatalf("Open while another process holds the file: %v after %s, want ErrLocked within the timeout", err, time.Since(begin))
	}
}

// verifyCrashFile checks the file after a kill and returns its revision.
func verifyCrashFile(t *testing.T, path string, lastAck int64) int64 {
	t.Helper()
	ctx := t.Context()
	s, err := Open(path, Options{HistoryLimit: crashHistory}, testLogger(t))
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()

	// bbolt's own consistency check: pages, freelist, bucket structure.
	err = s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() { // drain: Check's goroutine sends all
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatalf("bbolt check: %v", err)
	}

	// Every committed transaction is there in full, and nothing else: the
	// revision counts the transactions, all acknowledged ones included.
	var rev int64
	err = s.View(ctx, func(r store.Reader) error {
		rev = r.Revision()
		for _, prefix := range []string{"a/", "b/", "c/"} {
			n, err := r.Count(prefix)
			if err != nil {
				return err
			}
			if int64(n) != rev {
				t.Errorf("%d keys under %s, want %d (the revision)", n, prefix, rev)
			}
		}
		for n := int64(1); n <= rev; n++ {
			for _, k := range crashKeys(n) {
				v, ok, err := r.Get(k)
				if err != nil {
					return err
				}
				if !ok || !bytes.Equal(v, crashValue(n)) {
					t.Errorf("transaction %d: key %s = %.20q, %v; want its value", n, k, v, ok)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	// At most the one transaction in flight committed without its ack.
	if rev != lastAck && rev != lastAck+1 {
		t.Fatalf("revision %d after the last ack %d", rev, lastAck)
	}

	// The log holds the last crashHistory transactions, consistent with the
	// data, and Watch replays exactly them.
	_, oldest := logRange(t, s)
	if want := max(1, rev-crashHistory+1); oldest != want {
		t.Errorf("oldest log entry %d, want %d", oldest, want)
	}
	if oldest > 1 {
		if _, err := s.Watch(ctx, 0); !errors.Is(err, store.ErrCompacted) {
			t.Errorf("Watch(0) with history from %d: %v, want ErrCompacted", oldest, err)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx, oldest-1)
	if err != nil {
		t.Fatalf("Watch(%d): %v", oldest-1, err)
	}
	evs := receiveN(t, ch, int(3*(rev-oldest+1)))
	for i, ev := range evs {
		n := oldest + int64(i/3)
		want := store.Event{Revision: n, Type: store.EventPut, Key: crashKeys(n)[i%3], Value: crashValue(n)}
		if ev.Revision != want.Revision || ev.Type != want.Type || ev.Key != want.Key || !bytes.Equal(ev.Value, want.Value) {
			t.Fatalf("replayed event %d = {%d %d %s}, want {%d %d %s}", i, ev.Revision, ev.Type, ev.Key, want.Revision, want.Type, want.Key)
		}
	}
	select {
	case ev := <-ch:
		t.Errorf("event beyond revision %d: %+v", rev, ev)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	for range ch {
	}
	return rev
}
