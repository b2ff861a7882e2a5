package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// defaultShutdownTimeout is the worker's --shutdown-timeout default
// (worker.DefaultShutdownTimeout), used when the manifest does not set it.
const defaultShutdownTimeout = 25 * time.Second

// manifests is every object of deploy/k8s, decoded strictly.
type manifests struct {
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	cronJobs     []*batchv1.CronJob
	services     []*corev1.Service
	secrets      []*corev1.Secret
	configMaps   []*corev1.ConfigMap
	pvcs         []*corev1.PersistentVolumeClaim
}

// appendNew adds a zero object to list and returns it, to decode into.
func appendNew[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

// named returns the object of list called name, or nil.
func named[T any, P interface {
	*T
	GetName() string
}](list []P, name string) P {
	for _, o := range list {
		if o.GetName() == name {
			return o
		}
	}
	return nil
}

// decode reads one YAML document into its API type by its kind. Unknown
// fields, duplicate fields and unknown kinds are errors.
func (m *manifests) decode(doc []byte) error {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return err
	}
	target, ok := map[string]func() any{
		"apps/v1 Deployment":       func() any { return appendNew(&m.deployments) },
		"apps/v1 StatefulSet":      func() any { return appendNew(&m.statefulSets) },
		"batch/v1 CronJob":         func() any { return appendNew(&m.cronJobs) },
		"v1 Service":               func() any { return appendNew(&m.services) },
		"v1 Secret":                func() any { return appendNew(&m.secrets) },
		"v1 ConfigMap":             func() any { return appendNew(&m.configMaps) },
		"v1 PersistentVolumeClaim": func() any { return appendNew(&m.pvcs) },
	}[meta.APIVersion+" "+meta.Kind]
	if !ok {
		return fmt.Errorf("unexpected kind %q (apiVersion %q)", meta.Kind, meta.APIVersion)
	}
	obj := target()
	return yaml.UnmarshalStrict(doc, obj)
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeFile decodes every document of a multi-document YAML file.
func (m *manifests) decodeFile(name string, data []byte) error {
	for i, doc := range docSep.Split(string(data), -1) {
		if len(bytes.TrimSpace(stripComments([]byte(doc)))) == 0 {
			continue
		}
		if err := m.decode([]byte(doc)); err != nil {
			return fmt.Errorf("%s, document %d: %w", name, i+1, err)
		}
	}
	return nil
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func newManifests() *manifests { return &manifests{} }

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in k8s/: %v", err)
	}
	m := newManifests()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.decodeFile(f, data); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestManifestsDecodeStrictly(t *testing.T) {
	t.Parallel()
	m := load(t)
	if len(m.deployments) != 2 || len(m.statefulSets) != 1 || len(m.cronJobs) != 1 {
		t.Errorf("got %d Deployments, %d StatefulSets, %d CronJobs; want 2 (worker, ui), 1 (redis), 1 (daily)",
			len(m.deployments), len(m.statefulSets), len(m.cronJobs))
	}
}

func TestUnknownFieldIsRefused(t *testing.T) {
	t.Parallel()
	doc := `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  template:
    spec:
      terminationGracePeriodSecond: 40
      containers: [{name: x, image: x}]
`
	err := newManifests().decodeFile("bad.yaml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), `unknown field "terminationGracePeriodSecond"`) {
		t.Fatalf("err = %v, want an unknown field error naming terminationGracePeriodSecond", err)
	}
	if err := newManifests().decodeFile("kind.yaml", []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")); err == nil {
		t.Error("a kind the test does not know was accepted")
	}
}

func TestWorkerGracePeriodExceedsShutdownTimeout(t *testing.T) {
	t.Parallel()
	w := deployment(t, load(t), "enrollq-worker")
	c := container(t, w.Spec.Template.Spec, "worker")
	timeout := shutdownTimeout(t, c.Args)
	grace := w.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil {
		t.Fatal("worker: terminationGracePeriodSeconds is not set (the default 30s is too close to the shutdown timeout)")
	}
	if g := time.Duration(*grace) * time.Second; g < timeout+5*time.Second {
		t.Errorf("worker: terminationGracePeriodSeconds %s, want at least --shutdown-timeout %s + 5s", g, timeout)
	}
}

func TestCronJobRunsADatedCampaign(t *testing.T) {
	t.Parallel()
	cj := load(t).cronJobs[0]
	c := container(t, cj.Spec.JobTemplate.Spec.Template.Spec, "enqueue")
	if name, _ := flagValue(c.Args, "campaign"); !strings.Contains(name, "{date}") {
		t.Errorf("--campaign %q, want a name with {date}, one campaign a day", name)
	}
	if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("concurrencyPolicy %q, want Forbid", cj.Spec.ConcurrencyPolicy)
	}
	if _, ok := flagValue(c.Args, "wait"); ok {
		t.Error("the CronJob waits for the campaign; a daily enqueue should hand it to the workers")
	}
}

// TestPodsAreSafe checks every pod: resources, probes (except for Jobs),
// non-root, and that every Secret, ConfigMap and claim it uses exists.
func TestPodsAreSafe(t *testing.T) {
	t.Parallel()
	m := load(t)
	type pod struct {
		name   string
		spec   corev1.PodSpec
		probes bool
	}
	var pods []pod
	for _, d := range m.deployments {
		pods = append(pods, pod{d.Name, d.Spec.Template.Spec, true})
	}
	for _, s := range m.statefulSets {
		pods = append(pods, pod{s.Name, s.Spec.Template.Spec, true})
		if len(s.Spec.VolumeClaimTemplates) == 0 {
			t.Errorf("%s: no volumeClaimTemplates: Redis would lose its data with the pod", s.Name)
		}
	}
	for _, c := range m.cronJobs {
		pods = append(pods, pod{c.Name, c.Spec.JobTemplate.Spec.Template.Spec, false})
	}
	for _, p := range pods {
		if sc := p.spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("%s: runAsNonRoot is not set", p.name)
		}
		for _, c := range p.spec.Containers {
			where := p.name + "/" + c.Name
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("%s: no %s request", where, r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					t.Errorf("%s: no %s limit", where, r)
				}
			}
			if p.probes && (c.LivenessProbe == nil || c.ReadinessProbe == nil) {
				t.Errorf("%s: liveness and readiness probes must be set", where)
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					checkSecretKey(t, m, where, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
				}
				if strings.Contains(e.Name, "KEY") && e.Value != "" {
					t.Errorf("%s: %s is set in the manifest; take it from a Secret", where, e.Name)
				}
			}
		}
		for _, v := range p.spec.Volumes {
			switch {
			case v.Secret != nil:
				for _, it := range v.Secret.Items {
					checkSecretKey(t, m, p.name, v.Secret.SecretName, it.Key)
				}
			case v.ConfigMap != nil && named(m.configMaps, v.ConfigMap.Name) == nil:
				t.Errorf("%s: volume %s uses ConfigMap %q, which no manifest defines", p.name, v.Name, v.ConfigMap.Name)
			case v.PersistentVolumeClaim != nil && named(m.pvcs, v.PersistentVolumeClaim.ClaimName) == nil:
				t.Errorf("%s: volume %s uses claim %q, which no manifest defines", p.name, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		}
	}
}

// TestSecretsArePlaceholders keeps real keys out of the repository.
func TestSecretsArePlaceholders(t *testing.T) {
	t.Parallel()
	for _, s := range load(t).secrets {
		if len(s.Data) > 0 {
			t.Errorf("secret %s: data is set; keep only stringData placeholders here", s.Name)
		}
		for k, v := range s.StringData {
			if !strings.Contains(v, "REPLACE_") || strings.Contains(v, "sk-ant-") {
				t.Errorf("secret %s: %s does not look like a placeholder", s.Name, k)
			}
		}
	}
}

func checkSecretKey(t *testing.T, m *manifests, where, name, key string) {
	t.Helper()
	s := named(m.secrets, name)
	if s == nil {
		t.Errorf("%s: uses Secret %q, which no manifest defines", where, name)
		return
	}
	if _, ok := s.StringData[key]; !ok {
		if _, ok := s.Data[key]; !ok {
			t.Errorf("%s: uses key %q of Secret %q, which it does not hold", where, key, name)
		}
	}
}

func deployment(t *testing.T, m *manifests, name string) *appsv1.Deployment {
	t.Helper()
	d := named(m.deployments, name)
	if d == nil {
		t.Fatalf("no Deployment %q", name)
	}
	return d
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

// flagValue finds --name=value or --name value in args; a bare --name
// (a boolean) reports "" and true.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		switch {
		case a == "--"+name || a == "-"+name:
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				return args[i+1], true
			}
			return "", true
		case strings.HasPrefix(a, "--"+name+"="), strings.HasPrefix(a, "-"+name+"="):
			_, v, _ := strings.Cut(a, "=")
			return v, true
		}
	}
	return "", false
}
