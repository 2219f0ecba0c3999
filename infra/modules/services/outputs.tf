output "enabled_services" {
  description = "The enabled APIs; depend on this to order resources after API enablement."
  value       = sort([for s in google_project_service.this : s.service])
}
