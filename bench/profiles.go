package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
)

// profileID is the i-th profile id of every bench input: "uprof_" and 26
// letters and digits, about as long as a real id, unique per i.
// profileIDPrefix starts every profile id of the bench.
const profileIDPrefix = "uprof_01bench"

func profileID(i int) string {
	return fmt.Sprintf(profileIDPrefix+"%019d", i)
}

// email is the passthrough column of the i-th profile.
func email(i int) string {
	return "user" + strconv.Itoa(i) + "@example.com"
}

// writeProfiles writes a campaign input of n profiles to path: a header,
// then user_profile_id and email per row.
func writeProfiles(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write profiles: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "user_profile_id,email")
	for i := range n {
		w.WriteString(profileID(i))
		w.WriteByte(',')
		w.WriteString(email(i))
		w.WriteByte('\n')
	}
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write profiles to %s: %w", path, err)
	}
	return nil
}
