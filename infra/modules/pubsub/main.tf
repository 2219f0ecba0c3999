# Who may publish, pull or read dead letters is granted in the iam module, on these resources
# only: nobody needs project-wide pubsub.editor.
resource "google_pubsub_topic" "input" {
  #checkov:skip=CKV_GCP_83:CMEK is opt-in through var.kms_key_name; the default is Google-managed encryption.
  project      = var.project_id
  name         = var.input_topic_name
  kms_key_name = var.kms_key_name
  labels       = var.labels
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:CMEK is opt-in through var.kms_key_name; the default is Google-managed encryption.
  project      = var.project_id
  name         = "${var.input_topic_name}-dead-letter"
  kms_key_name = var.kms_key_name
  labels       = var.labels
}

# The stream reads this subscription, not the topic: reading a topic makes Dataflow create a
# subscription of its own, which needs pubsub.subscriptions.create on the project, and drops
# the messages published while no job runs.
resource "google_pubsub_subscription" "input" {
  project                    = var.project_id
  name                       = var.input_topic_name
  topic                      = google_pubsub_topic.input.id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "${var.message_retention_seconds}s"
  labels                     = var.labels

  # A stream may be stopped for a while; the subscription must outlive it.
  expiration_policy {
    ttl = ""
  }

  # Messages no job manages to acknowledge (a payload that crashes the worker, say) leave the
  # subscription after max_delivery_attempts instead of being redelivered forever.
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }
}

# Pub/Sub drops what is published to a topic without subscriptions: this one keeps dead
# letters for inspection and replay.
resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = google_pubsub_topic.dead_letter.name
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "${var.message_retention_seconds}s"
  labels                     = var.labels

  expiration_policy {
    ttl = ""
  }
}
