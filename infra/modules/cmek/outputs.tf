output "kms_key_name" {
  description = "The key, once every service agent may use it (null without CMEK): depend on this before encrypting."
  value       = var.kms_key_name == null ? null : values(google_kms_crypto_key_iam_member.agents)[0].crypto_key_id
}

output "service_agents" {
  description = "Service agents granted roles/cloudkms.cryptoKeyEncrypterDecrypter on the key, by service (empty without CMEK)."
  value       = { for k, m in google_kms_crypto_key_iam_member.agents : k => m.member }
}
