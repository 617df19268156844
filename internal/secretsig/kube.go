package secretsig

import corev1 "k8s.io/api/core/v1"

// FromSecret returns what a signature over s covers: its namespace, name, type and
// data with stringData merged in (stringData wins, as in the API server, which
// merges it before admission and storage).
func FromSecret(s *corev1.Secret) Secret {
	data := make(map[string][]byte, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		data[k] = v
	}
	for k, v := range s.StringData {
		data[k] = []byte(v)
	}
	typ := s.Type
	if typ == "" {
		typ = corev1.SecretTypeOpaque // the API server's default
	}
	return Secret{Namespace: s.Namespace, Name: s.Name, Type: string(typ), Data: data}
}

// AnnotationOf returns s's signature annotation, "" when absent.
func AnnotationOf(s *corev1.Secret) string { return s.Annotations[Annotation] }
