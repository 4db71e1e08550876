// Package cliflag parses command lines whose flags may come before or after
// the positional arguments (`kanmon user add ADDRESS --config FILE`), which
// the standard flag package stops at.
package cliflag

import "flag"

// Parse parses args with fs, collecting positional arguments wherever they
// appear. It returns fs.Parse's error (flag.ErrHelp for -h).
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
