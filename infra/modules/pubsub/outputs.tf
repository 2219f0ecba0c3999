output "input_topic" {
  description = "Input topic id, projects/PROJECT/topics/NAME (mnistkit simulate-stream publishes here)."
  value       = google_pubsub_topic.input.id
}

output "input_subscription" {
  description = "Input subscription id, projects/PROJECT/subscriptions/NAME (the stream's --input)."
  value       = google_pubsub_subscription.input.id
}

output "dead_letter_topic" {
  description = "Dead-letter topic id, projects/PROJECT/topics/NAME-dead-letter."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Subscription holding the dead letters, projects/PROJECT/subscriptions/NAME-dead-letter."
  value       = google_pubsub_subscription.dead_letter.id
}

output "names" {
  description = "Short names of input_topic, input_subscription, dead_letter_topic and dead_letter_subscription (what IAM members take)."
  value = {
    input_topic              = google_pubsub_topic.input.name
    input_subscription       = google_pubsub_subscription.input.name
    dead_letter_topic        = google_pubsub_topic.dead_letter.name
    dead_letter_subscription = google_pubsub_subscription.dead_letter.name
  }
}
