output "cluster_name" {
  description = "The cluster's name, as tagged on every resource (tag clusterkit:cluster)."
  value       = var.cluster_name
}

output "cluster_id" {
  description = "The cluster's random id, as tagged on every resource (tag clusterkit:cluster-id)."
  value       = var.cluster_id
}

output "region" {
  description = "The AWS region the cluster is in."
  value       = var.region
}

output "master_public_ip" {
  description = "The master's public address: the only one, SSH from operator_cidr only."
  value       = aws_instance.master.public_ip
}

output "master_private_ip" {
  description = "The master's address inside the VPC (Spark, Ray and HDFS listen here)."
  value       = aws_instance.master.private_ip
}

output "worker_private_ips" {
  description = "The workers' addresses (private only, reached through the master)."
  value       = aws_instance.worker[*].private_ip
}

output "ssh_user" {
  description = "The user clusterkit logs in as (root, with the operator's key; cloud-init allows it)."
  value       = "root"
}

output "image_user" {
  description = "The image's own login user, which accepts the same key (admin on Debian, ubuntu on Ubuntu)."
  value       = local.image.user
}

output "ami_id" {
  description = "The image every node boots (ami_id, else the newest of ami_family); clusterkit gives it back as ami_id when it applies again."
  value       = local.node_common.ami
}

output "availability_zone" {
  description = "The zone the subnets and every node are in; clusterkit gives it back as availability_zone when it applies again."
  value       = local.zone
}

output "master_instance_id" {
  description = "The master's EC2 instance id."
  value       = aws_instance.master.id
}

output "worker_names" {
  description = "The workers' node names, worker-1 to worker-N, in the order of worker_private_ips and worker_instance_ids."
  value       = [for i in range(var.worker_count) : "worker-${i + 1}"]
}

output "worker_instance_ids" {
  description = "The workers' EC2 instance ids, worker-1 first."
  value       = aws_instance.worker[*].id
}

output "worker_market" {
  description = "How the workers are bought: on-demand or spot."
  value       = var.worker_market
}

output "master_security_group_id" {
  description = "The group holding the SSH rule that `clusterkit allow-ip` updates."
  value       = aws_security_group.master.id
}

output "vpc_id" {
  description = "The cluster's VPC."
  value       = aws_vpc.cluster.id
}
