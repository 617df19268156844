package webhook

import (
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func metav1TypeMeta() metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}
}
func typesUID(s string) types.UID { return types.UID(s) }
func itoa(i int) string           { return strconv.Itoa(i) }
