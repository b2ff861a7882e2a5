package redisconn

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

func TestOpenSettings(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	tests := []struct {
		url          string
		opts         []Option
		wantProtocol int
		wantPool     int
	}{
		{"redis://" + mr.Addr() + "/0", nil, 2, 0},
		{"redis://" + mr.Addr() + "/0?protocol=3", nil, 3, 0},
		{"redis://" + mr.Addr() + "/0", []Option{MinPool(500)}, 2, 500},
		{"redis://" + mr.Addr() + "/0?pool_size=600", []Option{MinPool(500)}, 2, 600},
	}
	for _, tt := range tests {
		rdb, err := Open(context.Background(), tt.url, time.Second, tt.opts...)
		if err != nil {
			t.Fatalf("Open(%s): %v", tt.url, err)
		}
		o := rdb.Options()
		if o.Protocol != tt.wantProtocol {
			t.Errorf("Open(%s): protocol %d, want %d", tt.url, o.Protocol, tt.wantProtocol)
		}
		if tt.wantPool != 0 && o.PoolSize != tt.wantPool {
			t.Errorf("Open(%s): pool %d, want %d", tt.url, o.PoolSize, tt.wantPool)
		}
		rdb.Close()
	}
}

func TestOpenNamesServerNotPassword(t *testing.T) {
	t.Parallel()
	_, err := Open(context.Background(), "redis://:hunter2@127.0.0.1:1/3", 500*time.Millisecond)
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "127.0.0.1:1 (db 3)") || strings.Contains(msg, "hunter2") {
		t.Errorf("error %q: want host, port and db, and no password", msg)
	}
}
