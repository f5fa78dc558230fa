package ppp

import (
	"fmt"
	"os"
	"strings"
)

// Secrets holds CHAP secrets in pppd's chap-secrets format:
//
//	# client   server   secret            [acceptable local IP addresses ...]
//	client     server   "secret with sp"  *
//
// A line gives the secret that client uses to authenticate to server; the
// classic setup has two lines, one for each direction, with different
// secrets. "*" matches any name; an exact name wins over "*".
type Secrets struct {
	Path    string
	entries []secretEntry
	mode    os.FileMode
}

type secretEntry struct {
	client, server, secret string
	line                   int
}

// LoadSecrets reads a chap-secrets file.
func LoadSecrets(path string) (*Secrets, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading secrets: %w", err)
	}
	s, err := ParseSecrets(path, data)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil {
		s.mode = fi.Mode().Perm()
	}
	return s, nil
}

// ParseSecrets parses chap-secrets text read from path; errors name FILE:LINE.
func ParseSecrets(path string, data []byte) (*Secrets, error) {
	s := &Secrets{Path: path}
	for i, line := range strings.Split(string(data), "\n") {
		words, err := splitWords(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		switch {
		case len(words) == 0:
			continue
		case len(words) < 3:
			return nil, fmt.Errorf("%s:%d: want \"client server secret [addresses...]\", got %d field(s)", path, i+1, len(words))
		}
		s.entries = append(s.entries, secretEntry{client: words[0], server: words[1], secret: words[2], line: i + 1})
	}
	return s, nil
}

// splitWords splits a line like pppd does: white space separates words,
// double or single quotes group, backslash escapes, # starts a comment.
func splitWords(line string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool
		quote byte
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			in = true
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == '#':
			i = len(line)
		case c == ' ' || c == '\t' || c == '\r':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// Lookup returns the secret client uses to authenticate to server. An entry
// naming both exactly beats one with a "*" (pppd's precedence).
func (s *Secrets) Lookup(client, server string) (string, bool) {
	if s == nil {
		return "", false
	}
	best, bestScore := "", -1
	for _, e := range s.entries {
		score := 0
		switch e.client {
		case client:
			score += 2
		case "*":
		default:
			continue
		}
		switch e.server {
		case server:
			score++
		case "*":
		default:
			continue
		}
		if score > bestScore {
			best, bestScore = e.secret, score
		}
	}
	return best, bestScore >= 0
}

// Len returns the number of entries.
func (s *Secrets) Len() int { return len(s.entries) }

// TooOpen reports whether the file was readable by group or others, which
// pppd warns about: anyone who reads it can impersonate either end.
func (s *Secrets) TooOpen() bool { return s.mode&0o077 != 0 }
