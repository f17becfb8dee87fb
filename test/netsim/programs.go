// SPDX-License-Identifier: Apache-2.0

package netsim

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EchoServer is a ready-made program (add it to the Programs given to Main)
// that serves TCP echo. Flags: -listen address (default ":8080"). It prints
// "listening <address>" once it accepts connections, greets each connection
// with "peer <client address>\n" (the address it saw, after any NAT or
// redirection), then echoes what it reads. It exits 0 on SIGTERM or
// SIGINT.
func EchoServer(args []string) int {
	fs := flag.NewFlagSet("echo-server", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo-server:", err)
		return 1
	}
	fmt.Printf("listening %s\n", ln.Addr())
	var wg sync.WaitGroup
	wg.Go(func() {
		<-ctx.Done()
		_ = ln.Close()
	})
	for {
		conn, err := ln.Accept()
		if err != nil {
			break
		}
		wg.Go(func() {
			defer conn.Close()
			if _, err := fmt.Fprintf(conn, "peer %s\n", conn.RemoteAddr()); err != nil {
				return
			}
			_, _ = io.Copy(conn, conn)
		})
	}
	stop()
	wg.Wait()
	return 0
}

// Dial is a ready-made program (add it to the Programs given to Main) that
// talks to an EchoServer. Usage: [-timeout 5s] [-message ping] address. It
// prints four lines: "local <its address>", "remote <server address>",
// "peer <its address as the server saw it>" and "echo <message echoed>",
// and exits 1 on any error.
func Dial(args []string) int {
	fs := flag.NewFlagSet("dial", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "time for the whole exchange")
	message := fs.String("message", "ping", "line to send")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: dial [-timeout d] [-message m] address")
		return 2
	}
	if err := dial(fs.Arg(0), *message, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		return 1
	}
	return 0
}

func dial(addr, message string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	greeting, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if _, err := fmt.Fprintf(conn, "%s\n", message); err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	echo, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	fmt.Printf("local %s\nremote %s\n%s\necho %s\n", conn.LocalAddr(), conn.RemoteAddr(),
		strings.TrimSpace(greeting), strings.TrimSpace(echo))
	return nil
}
