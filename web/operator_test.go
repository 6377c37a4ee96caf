package web

// The keys the operator's templates build with printf (TestTranslationsComplete).
func init() {
	keyFamilies["op_feed_kind_"] = feedKinds
	keyFamilies["op_order_state_"] = []string{"pending", "in_force", "lifted"}
	keyFamilies["op_risk_level_"] = []string{"high", "medium"}
	keyFamilies["op_device_role_"] = []string{"checkpoint", "feed"}
}
