//! The three SQS calls the worker makes on a source's queue, with what they
//! always ask for; the worker decides what a failure means (each error comes back
//! as [`crate::aws::error_text`] describes it).

use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};

/// One queue.
pub(crate) struct Queue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Queue {
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Queue {
        Queue { client, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Long-polls for up to `max` messages (at most 10, SQS's own cap), each made
    /// invisible for `visibility`.
    pub async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, String> {
        self.client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.min(10) as i32)
            .wait_time_seconds(wait.as_secs() as i32)
            .visibility_timeout(visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            // Who sent it and when: a rejected message's alert names its sender.
            .message_system_attribute_names(MessageSystemAttributeName::SenderId)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map(|out| out.messages.unwrap_or_default())
            .map_err(|e| crate::aws::error_text(&e))
    }

    /// Makes the message invisible for `to` from now (zero: visible at once).
    pub async fn change_visibility(&self, receipt: &str, to: Duration) -> Result<(), String> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(to.as_secs() as i32)
            .send()
            .await
            .map(drop)
            .map_err(|e| crate::aws::error_text(&e))
    }

    pub async fn delete(&self, receipt: &str) -> Result<(), String> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(drop)
            .map_err(|e| crate::aws::error_text(&e))
    }
}
