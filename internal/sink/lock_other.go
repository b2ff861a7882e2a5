//go:build !unix

package sink

import (
	"errors"
	"os"
)

// tryLock takes no lock where flock(2) is missing: outputs are then not
// claimed (see claimOutput).
func tryLock(*os.File) (bool, error) { return false, errors.ErrUnsupported }
