package settings

import "testing"

func TestInt(t *testing.T) {
	tests := []struct {
		name    string
		in      any
		want    int
		wantErr bool
	}{
		{"int", 7, 7, false},
		{"int64", int64(8), 8, false},
		{"uint64", uint64(9), 9, false},
		{"whole float", 10.0, 10, false},
		{"fraction", 1.5, 0, true},
		{"string", "11", 11, false},
		{"bad string", "eleven", 0, true},
		{"bool", true, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Int(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Int(%v) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Int(%v) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestBool(t *testing.T) {
	tests := []struct {
		in      any
		want    bool
		wantErr bool
	}{
		{true, true, false},
		{"false", false, false},
		{"yes please", false, true},
		{1, false, true},
	}
	for _, tt := range tests {
		got, err := Bool(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("Bool(%v) error = %v, want error %v", tt.in, err, tt.wantErr)
		}
		if got != tt.want {
			t.Errorf("Bool(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestString(t *testing.T) {
	if got, err := String("x"); err != nil || got != "x" {
		t.Errorf(`String("x") = %q, %v; want "x", nil`, got, err)
	}
	if _, err := String(3); err == nil {
		t.Error("String(3) returned no error, want one")
	}
}
