package deploy

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// composeFile is the part of compose.yaml the test checks. Compose has
// no Go API type here, so unknown fields are allowed.
type composeFile struct {
	Services map[string]struct {
		Command         []string               `json:"command"`
		Entrypoint      []string               `json:"entrypoint"`
		Environment     map[string]string      `json:"environment"`
		StopGracePeriod string                 `json:"stop_grace_period"`
		Deploy          struct{ Replicas int } `json:"deploy"`
		Secrets         []string               `json:"secrets"`
	} `json:"services"`
	Secrets map[string]struct {
		File string `json:"file"`
	} `json:"secrets"`
}

func TestCompose(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, name := range []string{"redis", "sandbox", "worker", "ui", "enqueue"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("compose.yaml: no service %q", name)
		}
	}
	w := c.Services["worker"]
	if w.Deploy.Replicas < 2 {
		t.Errorf("worker replicas %d, want 2 sharing one limit", w.Deploy.Replicas)
	}
	grace, err := time.ParseDuration(w.StopGracePeriod)
	if err != nil || grace <= shutdownTimeout(t, w.Command) {
		t.Errorf("worker stop_grace_period %q, want longer than --shutdown-timeout %s", w.StopGracePeriod, shutdownTimeout(t, w.Command))
	}
	if name, _ := flagValue(c.Services["enqueue"].Entrypoint, "campaign"); !strings.Contains(name, "{date}") {
		t.Errorf("enqueue --campaign %q, want a dated name", name)
	}
	for _, s := range c.Services["ui"].Secrets {
		if _, ok := c.Secrets[s]; !ok {
			t.Errorf("ui uses secret %q, which compose.yaml does not define", s)
		}
	}

	conf, err := os.ReadFile("redis.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"appendonly yes", "maxmemory-policy noeviction"} {
		if !regexp.MustCompile(`(?m)^` + want + `$`).Match(conf) {
			t.Errorf("redis.conf lacks %q", want)
		}
	}
}

func TestSystemdAndCron(t *testing.T) {
	t.Parallel()
	unit := read(t, "systemd/enrollq-worker.service")
	stop := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)$`).FindStringSubmatch(unit)
	if stop == nil {
		t.Fatal("enrollq-worker.service: no TimeoutStopSec")
	}
	secs, _ := strconv.Atoi(stop[1])
	exec := strings.ReplaceAll(regexp.MustCompile(`(?ms)^ExecStart=(.*?[^\\])$`).FindStringSubmatch(unit)[1], "\\\n", " ")
	if timeout := shutdownTimeout(t, strings.Fields(exec)); time.Duration(secs)*time.Second <= timeout {
		t.Errorf("TimeoutStopSec=%d, want longer than --shutdown-timeout %s", secs, timeout)
	}
	if strings.Contains(unit, "ANTHROPIC_API_KEY=") {
		t.Error("enrollq-worker.service sets the API key inline; use the credential file")
	}
	for _, f := range []string{"systemd/enrollq-daily.service", "crontab"} {
		if !strings.Contains(read(t, f), "--campaign onboarding-{date}") {
			t.Errorf("%s: the campaign is not dated", f)
		}
	}
	if !strings.Contains(read(t, "systemd/enrollq-daily.timer"), "OnCalendar=") {
		t.Error("enrollq-daily.timer has no OnCalendar")
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// shutdownTimeout is --shutdown-timeout in args, or the worker's default.
func shutdownTimeout(t *testing.T, args []string) time.Duration {
	t.Helper()
	v, ok := flagValue(args, "shutdown-timeout")
	if !ok {
		return defaultShutdownTimeout
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("--shutdown-timeout %q: %v", v, err)
	}
	return d
}
