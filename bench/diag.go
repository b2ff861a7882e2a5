package main

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// redisCPU is the Redis server's CPU time so far (user + system, from
// INFO cpu). The server is shared: other clients' work counts too.
func (b *bench) redisCPU(ctx context.Context) (time.Duration, error) {
	info, err := b.rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO cpu: %w", err)
	}
	var total float64
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_user" && k != "used_cpu_sys") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("redis INFO cpu %s: %w", k, err)
		}
		total += f
	}
	return time.Duration(total * float64(time.Second)), nil
}

// closedConnsTo counts this host's TCP sockets in TIME_WAIT towards the
// port of baseURL: connections the clients of that server closed in the
// last minute. A client that keeps its connections alive leaves few.
func closedConnsTo(baseURL string) (int, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return 0, err
	}
	port, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port of %s: %w", baseURL, err)
	}
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		c, err := countTimeWait(table, port)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// countTimeWait counts the sockets of a /proc/net/tcp table in TIME_WAIT
// (state 06) whose remote port is port.
func countTimeWait(table string, port uint64) (int, error) {
	f, err := os.Open(table)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()

	const timeWait = "06"
	n := 0
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text()) // sl local rem st ...
		if len(fields) < 4 || fields[3] != timeWait {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[2], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && p == port {
			n++
		}
	}
	return n, sc.Err()
}
