package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// Fingerprint returns a short, stable stand-in for an API key, safe to log:
// "sha256:" and the first 8 hex digits of the key's SHA-256.
func Fingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:4])
}

// loggedHeaders logs request headers with keys replaced by their
// fingerprints and other credentials by a placeholder.
type loggedHeaders http.Header

func (h loggedHeaders) LogValue() slog.Value {
	names := slices.Sorted(maps.Keys(h))
	attrs := make([]slog.Attr, 0, len(names))
	for _, name := range names {
		value := strings.Join(h[name], ", ")
		switch lower := strings.ToLower(name); lower {
		case "x-api-key":
			value = Fingerprint(value)
		case "authorization":
			scheme, token, _ := strings.Cut(value, " ")
			value = scheme + " " + Fingerprint(strings.TrimSpace(token))
		case "cookie", "proxy-authorization":
			value = "[redacted]"
		}
		attrs = append(attrs, slog.String(strings.ToLower(name), value))
	}
	return slog.GroupValue(attrs...)
}
