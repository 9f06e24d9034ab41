// Command kstatus prints the kstatus verdict of Kubernetes objects, computed by the real
// sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute (the version pinned in go.mod), so the
// project's tests never carry their own copy of its rules.
//
// Flux (kustomize-controller's wait/healthChecks, helm-controller) computes the verdict through
// the fluxcd fork of cli-utils (github.com/fluxcd/cli-utils). Checked: the fork's
// pkg/kstatus/status at v1.4.0 (what kustomize-controller v1.10.1 requires) is the same code as
// upstream v0.37.2 apart from import paths and comments. The fork needs Go 1.27, hence upstream.
//
// Input on stdin: objects as JSON, either one JSON array of objects or a stream of objects (one
// per line, or any whitespace between them). Output on stdout: one JSON object per input
// object, in order, one per line:
//
//	{"name":"web-1","status":"Current","message":"Resource is current"}
//
// or {"name":...,"error":"..."} when Compute returns an error. The exit status is 0 unless the
// input cannot be read.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name    string `json:"name,omitempty"`
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// objects splits the input into the raw JSON of each object.
func objects(input []byte) ([]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(input)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var list []json.RawMessage
		if err := json.Unmarshal(trimmed, &list); err != nil {
			return nil, fmt.Errorf("reading the JSON array: %w", err)
		}
		return list, nil
	}
	var list []json.RawMessage
	decoder := json.NewDecoder(bytes.NewReader(trimmed))
	for {
		var raw json.RawMessage
		err := decoder.Decode(&raw)
		if err == io.EOF {
			return list, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading object %d: %w", len(list)+1, err)
		}
		list = append(list, raw)
	}
}

func compute(raw json.RawMessage) verdict {
	// The apimachinery decoder keeps integers as int64, as the API machinery (and Flux's
	// client) hands them to Compute; plain encoding/json would make them float64.
	object := map[string]interface{}{}
	if err := utiljson.Unmarshal(raw, &object); err != nil {
		return verdict{Error: fmt.Sprintf("not a JSON object: %v", err)}
	}
	u := &unstructured.Unstructured{Object: object}
	result, err := status.Compute(u)
	if err != nil {
		return verdict{Name: u.GetName(), Error: err.Error()}
	}
	return verdict{Name: u.GetName(), Status: result.Status.String(), Message: result.Message}
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: reading stdin: %v\n", err)
		os.Exit(2)
	}
	list, err := objects(input)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	encoder := json.NewEncoder(out)
	encoder.SetEscapeHTML(false)
	for _, raw := range list {
		if err := encoder.Encode(compute(raw)); err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: writing stdout: %v\n", err)
			os.Exit(2)
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: writing stdout: %v\n", err)
		os.Exit(2)
	}
}
