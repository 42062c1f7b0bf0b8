// Package validate holds the one error type every domain package returns
// for bad input, so the HTTP layer maps it to form errors or a 422 once.
package validate

import (
	"sort"
	"strings"
)

// Errors maps a form field to what is wrong with it.
type Errors map[string]string

func (e Errors) Error() string {
	parts := make([]string, 0, len(e))
	for k, v := range e {
		parts = append(parts, k+": "+v)
	}
	sort.Strings(parts)
	return "invalid input: " + strings.Join(parts, "; ")
}

// Err returns e as an error, or nil when it is empty.
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}
